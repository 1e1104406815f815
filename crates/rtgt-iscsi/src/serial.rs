//! Serial number arithmetic on 32-bit sequence numbers (RFC 1982, as RFC 7143 §4.2.2.1
//! requires for CmdSN, StatSN, DataSN, R2TSN).

/// `a < b` in serial arithmetic.
pub fn lt(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}

/// `a <= b` in serial arithmetic.
pub fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

/// `a > b` in serial arithmetic.
pub fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert!(lt(0xffff_fff0, 5));
        assert!(gt(5, 0xffff_fff0));
        assert!(le(7, 7));
        assert!(!lt(7, 7));
        assert!(lt(1, 2));
    }
}

/// RFC 1982 §3.2 properties, for any pair of serial numbers.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ahead_by_less_than_half_the_space_is_greater(a: u32, d in 1u32..0x8000_0000) {
            let b = a.wrapping_add(d);
            prop_assert!(lt(a, b));
            prop_assert!(gt(b, a));
            prop_assert!(le(a, b));
            prop_assert!(!lt(b, a));
            prop_assert!(!gt(a, b));
        }

        #[test]
        fn irreflexive_and_le_is_lt_or_eq(a: u32, b: u32) {
            prop_assert!(!lt(a, a) && le(a, a) && !gt(a, a));
            prop_assert_eq!(le(a, b), lt(a, b) || a == b);
            prop_assert_eq!(gt(a, b), lt(b, a));
        }

        #[test]
        fn at_most_one_order_holds(a: u32, b: u32) {
            // RFC 1982 leaves a distance of exactly 2^31 undefined: then neither holds,
            // never both.
            prop_assert!(!(lt(a, b) && lt(b, a)));
            if a != b && b.wrapping_sub(a) != 0x8000_0000 {
                prop_assert!(lt(a, b) ^ lt(b, a));
            }
        }

        #[test]
        fn order_is_invariant_under_translation(a: u32, b: u32, t: u32) {
            // Comparisons depend only on the difference, so the window can wrap anywhere.
            prop_assert_eq!(lt(a, b), lt(a.wrapping_add(t), b.wrapping_add(t)));
        }
    }
}
