//! Validated value types of the orders domain, and its limits.
//!
//! [`Currency`], [`Sku`] and [`Quantity`] can only hold valid values: their
//! constructors validate, and deserialization goes through the same
//! constructors, so a snapshot or a log record cannot smuggle in a value the
//! API would have refused. Any uuid is a valid id. Money stays a plain `i64`
//! of minor units; its limits are order rules, checked by the decider.

use std::fmt;
use std::num::IntErrorKind;

use foldline_eventsourcing::uuid_id;
pub use foldline_eventsourcing::IdError;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Highest accepted unit price, in minor units of the order's currency.
pub const MAX_UNIT_PRICE: i64 = 100_000_000_000;

/// Highest accepted order total, in minor units of the order's currency.
///
/// Far below `i64::MAX`, so sums of a few totals (reports, refunds) stay safe
/// too.
pub const MAX_ORDER_TOTAL: i64 = 10_000_000_000_000;

/// Most lines one order may have.
pub const MAX_LINES: usize = 100;

/// Most characters (Unicode scalar values) a cancel or payment-failure reason
/// may have.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest rejection code (`RejectOrder`).
pub const MAX_CODE_CHARS: usize = 64;
/// Longest payment provider card token.
pub const MAX_CARD_TOKEN_CHARS: usize = 128;

uuid_id!(
    /// Identifies one order; also the key of its event stream.
    OrderId
);
uuid_id!(
    /// Identifies the customer who placed an order.
    CustomerId
);
uuid_id!(
    /// Identifies one payment attempt in the payments domain.
    PaymentId
);

/// Why text is not a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum CurrencyError {
    #[error("currency must be a three-letter iso 4217 code")]
    WrongLength,
    #[error("currency code must be three uppercase ascii letters")]
    NotUppercaseLetters,
    #[error("currency code is not an active iso 4217 currency")]
    Unknown,
}

/// An active ISO 4217 currency, with the exponent of its minor unit.
///
/// Holds a reference into [`ACTIVE_CURRENCIES`], so it is `Copy` and
/// compares in constant time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    minor_unit_exponent: u8,
}

impl Currency {
    // Spelled out rather than parsed so tests and callers get them in const
    // context; a test checks each against the table.
    pub const EUR: Self = Self::known("EUR", 2);
    pub const USD: Self = Self::known("USD", 2);
    pub const GBP: Self = Self::known("GBP", 2);
    pub const JPY: Self = Self::known("JPY", 0);

    const fn known(code: &'static str, minor_unit_exponent: u8) -> Self {
        Self {
            code,
            minor_unit_exponent,
        }
    }

    /// Accepts exactly an active code from [`ACTIVE_CURRENCIES`]. Lowercase is
    /// refused rather than normalized: the code is stored and echoed as
    /// given, and ISO 4217 codes are uppercase by definition.
    pub fn parse(text: &str) -> Result<Self, CurrencyError> {
        // Checked on bytes so that a three-character non-ASCII string (more
        // than three bytes) reads as the wrong length, not as a slicing
        // hazard.
        if text.len() != 3 {
            return Err(CurrencyError::WrongLength);
        }
        if !text.bytes().all(|byte| byte.is_ascii_uppercase()) {
            return Err(CurrencyError::NotUppercaseLetters);
        }
        ACTIVE_CURRENCIES
            .binary_search_by(|(code, _)| (*code).cmp(text))
            .map(|index| {
                let (code, minor_unit_exponent) = ACTIVE_CURRENCIES[index];
                Self::known(code, minor_unit_exponent)
            })
            .map_err(|_| CurrencyError::Unknown)
    }

    pub const fn as_str(&self) -> &'static str {
        self.code
    }

    /// How many decimal digits the minor unit has: 2 for EUR (cents), 0 for
    /// JPY, 3 for KWD. Amounts are always integers in minor units.
    pub const fn minor_unit_exponent(&self) -> u8 {
        self.minor_unit_exponent
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Currency({})", self.code)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.code)
    }
}

impl std::str::FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl TryFrom<String> for Currency {
    type Error = CurrencyError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

// By hand rather than derived: the derive would tie the `'static` code to the
// deserializer's input lifetime.
impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

/// Active ISO 4217 currencies (list one) with their minor-unit exponents,
/// sorted by code so lookups can binary-search.
///
/// Only circulating currencies an order can be priced in. Deliberately
/// absent: fund codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW), precious
/// metals (XAG, XAU, XPD, XPT), bond-market and accounting units (XBA-XBD,
/// XDR, XSU, XUA), the testing and "no currency" codes (XTS, XXX), and codes
/// withdrawn by recent amendments (ANG replaced by XCG in 2025, BGN by EUR in
/// 2026, CUC 2021, HRK 2023, SLL by SLE, ZWL by ZWG in 2024). Adding a code
/// later is safe; removing one would make old events fail to deserialize, so
/// a withdrawn code should only leave the table once no stored event uses it.
pub const ACTIVE_CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// Why text is not a SKU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum SkuError {
    #[error("sku must not be empty")]
    Empty,
    #[error("sku must be at most {max} characters", max = Sku::MAX_LEN)]
    TooLong,
    #[error("sku may contain only ascii letters, digits, '.', '_' and '-'")]
    InvalidCharacter,
}

/// A stock-keeping unit: 1 to 64 characters of `[A-Za-z0-9._-]`.
///
/// Compared exactly (case-sensitive): the catalogue owns SKU identity, and
/// folding case here could merge two distinct products on one order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

impl Sku {
    pub const MAX_LEN: usize = 64;

    pub fn parse(text: &str) -> Result<Self, SkuError> {
        if text.is_empty() {
            return Err(SkuError::Empty);
        }
        // The allowed alphabet is ASCII, so the byte length is the character
        // count for every text that can pass; a longer non-ASCII text is
        // refused either way.
        if text.len() > Self::MAX_LEN {
            return Err(SkuError::TooLong);
        }
        let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-');
        if !text.bytes().all(allowed) {
            return Err(SkuError::InvalidCharacter);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::str::FromStr for Sku {
    type Err = SkuError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl TryFrom<String> for Sku {
    type Error = SkuError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<Sku> for String {
    fn from(sku: Sku) -> Self {
        sku.0
    }
}

/// Why a number or text is not a quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum QuantityError {
    #[error("quantity must be a whole number")]
    NotANumber,
    #[error("quantity must be between {min} and {max}", min = Quantity::MIN, max = Quantity::MAX)]
    OutOfRange,
}

/// How many units of one SKU a line orders: 1 to 10 000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    pub const MIN: u32 = 1;
    pub const MAX: u32 = 10_000;

    /// Takes `i64` so every integer a client can send (negative, zero, huge)
    /// reaches validation instead of failing a narrowing conversion first.
    pub fn new(value: i64) -> Result<Self, QuantityError> {
        u32::try_from(value)
            .ok()
            .filter(|value| (Self::MIN..=Self::MAX).contains(value))
            .map(Self)
            .ok_or(QuantityError::OutOfRange)
    }

    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        match text.parse::<i64>() {
            Ok(value) => Self::new(value),
            // A number too large for i64 is still a number: report the range.
            Err(error)
                if matches!(
                    error.kind(),
                    IntErrorKind::PosOverflow | IntErrorKind::NegOverflow
                ) =>
            {
                Err(QuantityError::OutOfRange)
            }
            Err(_) => Err(QuantityError::NotANumber),
        }
    }

    pub const fn get(&self) -> u32 {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

impl TryFrom<i64> for Quantity {
    type Error = QuantityError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Quantity> for u32 {
    fn from(quantity: Quantity) -> Self {
        quantity.0
    }
}

/// One line of an order.
///
/// `unit_price` is a plain integer of minor units rather than a validated
/// type because its valid range is an order rule: an out-of-range price is
/// reported by the decider as `invalid_price`, naming the line's SKU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub quantity: Quantity,
    /// Minor units of the order's currency (cents for EUR).
    pub unit_price: i64,
}

impl OrderLine {
    /// `quantity * unit_price`, or `None` on overflow.
    pub fn line_total(&self) -> Option<i64> {
        self.unit_price.checked_mul(i64::from(self.quantity.get()))
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn ids_parse_uuids_and_refuse_garbage() {
        let text = "6f1da7b4-3c2e-4e0a-9a51-2b7cd0e4f318";
        let order_id = OrderId::parse(text).unwrap();
        assert_eq!(order_id.to_string(), text);
        assert_eq!(
            CustomerId::parse(text).unwrap().as_uuid(),
            order_id.as_uuid()
        );
        assert_eq!(PaymentId::parse(text).unwrap().to_string(), text);

        assert_eq!(OrderId::parse(""), Err(IdError::Empty));
        for garbage in [
            " ",
            "not-a-uuid",
            "6f1da7b4-3c2e-4e0a-9a51-2b7cd0e4f31",
            "6f1da7b4-3c2e-4e0a-9a51-2b7cd0e4f3189",
            " 6f1da7b4-3c2e-4e0a-9a51-2b7cd0e4f318",
            "6f1da7b4-3c2e-4e0a-9a51-2b7cd0e4f31é",
            "-1",
            "ünïcødé",
            &"a".repeat(10_000),
        ] {
            assert_eq!(
                OrderId::parse(garbage),
                Err(IdError::Malformed),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn ids_serialize_as_bare_uuid_strings() {
        let id = OrderId::from_uuid(Uuid::from_u128(1));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"00000000-0000-0000-0000-000000000001\"");
        assert_eq!(serde_json::from_str::<OrderId>(&json).unwrap(), id);
    }

    #[test]
    fn currency_accepts_active_codes_with_their_exponents() {
        assert_eq!(Currency::parse("EUR"), Ok(Currency::EUR));
        assert_eq!(Currency::parse("JPY").unwrap().minor_unit_exponent(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_unit_exponent(), 3);
        assert_eq!(Currency::parse("XOF").unwrap().minor_unit_exponent(), 0);
        assert_eq!(Currency::parse("USD").unwrap().as_str(), "USD");
        assert_eq!(Currency::parse("CHF").unwrap().to_string(), "CHF");
    }

    #[test]
    fn currency_constants_agree_with_the_table() {
        for constant in [Currency::EUR, Currency::USD, Currency::GBP, Currency::JPY] {
            assert_eq!(Currency::parse(constant.as_str()), Ok(constant));
        }
    }

    #[test]
    fn currency_table_is_sorted_unique_and_well_formed() {
        assert!(
            ACTIVE_CURRENCIES.len() >= 150,
            "{}",
            ACTIVE_CURRENCIES.len()
        );
        assert!(ACTIVE_CURRENCIES
            .windows(2)
            .all(|pair| pair[0].0 < pair[1].0));
        for (code, exponent) in ACTIVE_CURRENCIES {
            assert_eq!(code.len(), 3, "{code}");
            assert!(code.bytes().all(|byte| byte.is_ascii_uppercase()), "{code}");
            assert!(matches!(exponent, 0 | 2 | 3), "{code}");
            assert_eq!(
                Currency::parse(code).map(|currency| currency.as_str()),
                Ok(*code)
            );
        }
    }

    #[test]
    fn currency_refuses_garbage() {
        for (input, expected) in [
            ("", CurrencyError::WrongLength),
            ("EU", CurrencyError::WrongLength),
            ("EURO", CurrencyError::WrongLength),
            (" EUR", CurrencyError::WrongLength),
            ("€", CurrencyError::NotUppercaseLetters),
            ("ÉUR", CurrencyError::WrongLength),
            ("eur", CurrencyError::NotUppercaseLetters),
            ("Eur", CurrencyError::NotUppercaseLetters),
            ("E1R", CurrencyError::NotUppercaseLetters),
            ("-12", CurrencyError::NotUppercaseLetters),
            ("XXX", CurrencyError::Unknown),
            ("XTS", CurrencyError::Unknown),
            ("XAU", CurrencyError::Unknown),
            ("ABC", CurrencyError::Unknown),
            ("HRK", CurrencyError::Unknown),
            ("ZZZ", CurrencyError::Unknown),
        ] {
            assert_eq!(Currency::parse(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn currency_serializes_as_its_code_and_validates_on_the_way_in() {
        assert_eq!(serde_json::to_string(&Currency::JPY).unwrap(), "\"JPY\"");
        let parsed: Currency = serde_json::from_str("\"KWD\"").unwrap();
        assert_eq!(parsed.minor_unit_exponent(), 3);
        assert!(serde_json::from_str::<Currency>("\"XXX\"").is_err());
        assert!(serde_json::from_str::<Currency>("\"eur\"").is_err());
    }

    #[test]
    fn sku_accepts_its_alphabet_up_to_the_limit() {
        assert_eq!(Sku::parse("A").unwrap().as_str(), "A");
        assert_eq!(Sku::parse("sku-1_a.B").unwrap().to_string(), "sku-1_a.B");
        let longest = "x".repeat(Sku::MAX_LEN);
        assert_eq!(Sku::parse(&longest).unwrap().as_str(), longest);
    }

    #[test]
    fn sku_refuses_garbage() {
        for (input, expected) in [
            (String::new(), SkuError::Empty),
            ("x".repeat(Sku::MAX_LEN + 1), SkuError::TooLong),
            ("é".repeat(Sku::MAX_LEN), SkuError::TooLong),
            (" ".into(), SkuError::InvalidCharacter),
            ("sku 1".into(), SkuError::InvalidCharacter),
            ("sku/1".into(), SkuError::InvalidCharacter),
            ("skü".into(), SkuError::InvalidCharacter),
            ("😀".into(), SkuError::InvalidCharacter),
            ("sku\n".into(), SkuError::InvalidCharacter),
            ("sku\0".into(), SkuError::InvalidCharacter),
        ] {
            assert_eq!(Sku::parse(&input), Err(expected), "{input:?}");
        }
        assert!(serde_json::from_str::<Sku>("\"bad sku\"").is_err());
        assert!(serde_json::from_str::<Sku>("\"\"").is_err());
    }

    #[test]
    fn quantity_accepts_its_range() {
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert_eq!(Quantity::new(10_000).unwrap().get(), 10_000);
        assert_eq!(Quantity::parse("42").unwrap().get(), 42);
        assert_eq!(Quantity::parse("+7").unwrap().get(), 7);
    }

    #[test]
    fn quantity_refuses_garbage() {
        for value in [0, -1, 10_001, i64::MIN, i64::MAX, i64::from(u32::MAX) + 1] {
            assert_eq!(
                Quantity::new(value),
                Err(QuantityError::OutOfRange),
                "{value}"
            );
        }
        for (input, expected) in [
            ("", QuantityError::NotANumber),
            (" 1", QuantityError::NotANumber),
            ("1.5", QuantityError::NotANumber),
            ("1e3", QuantityError::NotANumber),
            ("one", QuantityError::NotANumber),
            ("١٢", QuantityError::NotANumber),
            ("-", QuantityError::NotANumber),
            ("0", QuantityError::OutOfRange),
            ("-5", QuantityError::OutOfRange),
            ("10001", QuantityError::OutOfRange),
            ("99999999999999999999999", QuantityError::OutOfRange),
            ("-99999999999999999999999", QuantityError::OutOfRange),
        ] {
            assert_eq!(Quantity::parse(input), Err(expected), "{input:?}");
        }
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert!(serde_json::from_str::<Quantity>("-3").is_err());
        assert!(serde_json::from_str::<Quantity>("2.5").is_err());
        assert_eq!(serde_json::from_str::<Quantity>("3").unwrap().get(), 3);
    }

    #[test]
    fn line_total_is_checked() {
        let line = |unit_price| OrderLine {
            sku: Sku::parse("A").unwrap(),
            quantity: Quantity::new(10_000).unwrap(),
            unit_price,
        };
        assert_eq!(
            line(MAX_UNIT_PRICE).line_total(),
            Some(1_000_000_000_000_000)
        );
        assert_eq!(line(i64::MAX).line_total(), None);
    }

    #[test]
    fn error_messages_are_lowercase_without_trailing_period() {
        let messages = [
            IdError::Empty.to_string(),
            IdError::Malformed.to_string(),
            CurrencyError::WrongLength.to_string(),
            CurrencyError::NotUppercaseLetters.to_string(),
            CurrencyError::Unknown.to_string(),
            SkuError::Empty.to_string(),
            SkuError::TooLong.to_string(),
            SkuError::InvalidCharacter.to_string(),
            QuantityError::NotANumber.to_string(),
            QuantityError::OutOfRange.to_string(),
        ];
        for message in messages {
            assert_eq!(message, message.to_lowercase());
            assert!(!message.ends_with('.'), "{message}");
        }
        assert_eq!(
            QuantityError::OutOfRange.to_string(),
            "quantity must be between 1 and 10000"
        );
        assert_eq!(
            SkuError::TooLong.to_string(),
            "sku must be at most 64 characters"
        );
    }
}
