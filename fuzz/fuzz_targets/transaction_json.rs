//! The JSON transaction parser never panics, and what it accepts survives the JSON
//! and binary round trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostore_os::json::{transaction_from_json, transaction_to_json, transactions_from_str};
use ostore_os::Transaction;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(ts) = transactions_from_str(s) {
        for t in ts {
            assert_eq!(transaction_from_json(&transaction_to_json(&t)).expect("JSON round trip"), t);
            let b = t.encode().expect("parsed transactions are valid");
            assert_eq!(Transaction::decode(&b).expect("binary round trip"), t);
        }
    }
});
