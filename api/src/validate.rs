//! Input checks shared by every area. Each failure is BAD_USER_INPUT naming the
//! input field, so apps can point at the box to fix.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::error::{ApiError, ApiResult};

/// The years the service deals in. Beyond them PostgreSQL cannot store some
/// dates, SQLite would compare them wrongly as text, and date arithmetic
/// would overflow.
const YEARS: std::ops::RangeInclusive<i32> = 1900..=9999;

pub fn date(value: NaiveDate, field: &str) -> ApiResult<NaiveDate> {
    if YEARS.contains(&value.year()) {
        Ok(value)
    } else {
        Err(ApiError::bad_input(
            field,
            format!("must be a date between the years {} and {}", YEARS.start(), YEARS.end()),
        ))
    }
}

pub fn timestamp(value: DateTime<Utc>, field: &str) -> ApiResult<DateTime<Utc>> {
    date(value.date_naive(), field).map(|_| value)
}

/// [`timestamp`] for an optional input.
pub fn optional_timestamp(value: Option<DateTime<Utc>>, field: &str) -> ApiResult<Option<DateTime<Utc>>> {
    value.map(|value| timestamp(value, field)).transpose()
}

/// Trims `value` and requires 1..=`max_chars` characters without control characters.
pub fn text(value: &str, field: &str, max_chars: usize) -> ApiResult<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ApiError::bad_input(field, "must not be empty"));
    }
    if trimmed.chars().count() > max_chars {
        return Err(ApiError::bad_input(field, format!("must be at most {max_chars} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::bad_input(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// A mainland China mobile number: 11 digits starting with 1[3-9]. A leading
/// "+86" or "86" and spaces or dashes are accepted and dropped.
pub fn mobile_phone(value: &str, field: &str) -> ApiResult<String> {
    let digits: String = value.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits =
        digits.strip_prefix("+86").or_else(|| digits.strip_prefix("86").filter(|d| d.len() == 11)).unwrap_or(&digits);
    let bytes = digits.as_bytes();
    let valid = bytes.len() == 11
        && bytes.iter().all(u8::is_ascii_digit)
        && bytes[0] == b'1'
        && (b'3'..=b'9').contains(&bytes[1]);
    if valid { Ok(digits.to_owned()) } else { Err(ApiError::bad_input(field, "must be an 11-digit mobile number")) }
}

/// Any phone a person can be called on (landlines included): 5–20 digits,
/// optionally with a leading '+'; spaces and dashes are dropped.
pub fn contact_phone(value: &str, field: &str) -> ApiResult<String> {
    let compact: String = value.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    if (5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(compact)
    } else {
        Err(ApiError::bad_input(field, "must be a phone number of 5 to 20 digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_outside_the_years_the_service_deals_in_are_refused() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert!(date(day(1900, 1, 1), "day").is_ok());
        assert!(date(day(9999, 12, 31), "day").is_ok());
        for bad in [day(1899, 12, 31), day(-4714, 1, 1), NaiveDate::MIN, NaiveDate::MAX, day(10000, 1, 1)] {
            assert!(date(bad, "day").is_err(), "{bad}");
        }
    }

    #[test]
    fn normalises_mobile_numbers() {
        assert_eq!(mobile_phone("138 0013 8000", "phone").unwrap(), "13800138000");
        assert_eq!(mobile_phone("+8613800138000", "phone").unwrap(), "13800138000");
        assert_eq!(mobile_phone("8613800138000", "phone").unwrap(), "13800138000");
        for bad in ["", "12800138000", "1380013800", "138001380001", "1380013800a", "２３８００１３８０００"]
        {
            assert!(mobile_phone(bad, "phone").is_err(), "{bad}");
        }
    }

    #[test]
    fn trims_and_bounds_text() {
        assert_eq!(text("  3号楼 ", "name", 10).unwrap(), "3号楼");
        assert!(text("   ", "name", 10).is_err());
        assert!(text("一二三四五六七八九十十", "name", 10).is_err());
        assert!(text("a\u{0}b", "name", 10).is_err());
    }
}
