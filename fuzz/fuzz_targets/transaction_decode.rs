//! Any byte string given to the transaction decoder yields a value or an error; a
//! decoded transaction re-encodes to bytes that decode to the same transaction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostore_os::Transaction;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Transaction::decode(data) {
        let again = t.encode().expect("a decoded transaction is valid");
        assert_eq!(Transaction::decode(&again).expect("re-encoding decodes"), t);
    }
});
