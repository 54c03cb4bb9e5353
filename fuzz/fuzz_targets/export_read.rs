//! Arbitrary bytes to the export-stream reader (`os-tool import`'s verification pass):
//! it must return counts or an error, never panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    let _ = ostore_os::export::verify(&mut r);
});
