//! Opaque event cursors: the position after an event in the delivery order.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::error::{ApiError, ApiResult};

pub fn encode(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("ev{seq}"))
}

pub fn decode(cursor: &str, field: &str) -> ApiResult<i64> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("ev").and_then(|seq| seq.parse::<i64>().ok()))
        .filter(|seq| *seq >= 0)
        .ok_or_else(|| ApiError::bad_input(field, "not a valid event cursor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        assert_eq!(decode(&encode(42), "after").unwrap(), 42);
        assert!(decode("garbage", "after").is_err());
        assert!(decode(&URL_SAFE_NO_PAD.encode("ev-1"), "after").is_err());
    }
}
