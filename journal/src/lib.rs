//! Write-ahead journal (work in progress: see issue 3).
