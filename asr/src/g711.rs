//! ITU-T G.711 µ-law and A-law companding.
//!
//! Decoding is a 256-entry table built at compile time; encoding follows the segment
//! search of the ITU reference so that encode(decode(x)) == x for every code word.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32_635;

const fn ulaw_decode_calc(code: u8) -> i16 {
    let u = !code;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode_calc(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let segment = ((a & 0x70) >> 4) as i32;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= segment - 1;
        }
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_decode_calc(i as u8)
        } else {
            ulaw_decode_calc(i as u8)
        };
        i += 1;
    }
    table
}

static ULAW_TO_LINEAR: [i16; 256] = build_table(false);
static ALAW_TO_LINEAR: [i16; 256] = build_table(true);

/// Decodes one µ-law code word to 16-bit linear PCM.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TO_LINEAR[code as usize]
}

/// Decodes one A-law code word to 16-bit linear PCM.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TO_LINEAR[code as usize]
}

/// Encodes 16-bit linear PCM to µ-law.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut x = sample as i32;
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(ULAW_CLIP) + ULAW_BIAS;
    // x is in [0x84, 0x7FFF]; the exponent is the position of its top bit above bit 7.
    let exponent = (31 - (x >> 7).leading_zeros() as i32).clamp(0, 7);
    let mantissa = (x >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Encodes 16-bit linear PCM to A-law.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let mut x = (sample as i32) >> 3;
    let mask = if x >= 0 {
        0xD5
    } else {
        x = -x - 1;
        0x55
    };
    const SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let Some(segment) = SEGMENT_END.iter().position(|&end| x <= end) else {
        return (0x7F ^ mask) as u8;
    };
    let mut code = (segment as i32) << 4;
    code |= if segment < 2 {
        (x >> 1) & 0x0F
    } else {
        (x >> segment) & 0x0F
    };
    (code ^ mask) as u8
}

/// Passes 16-bit PCM through a µ-law encode/decode round trip, as a G.711 call leg would.
pub fn ulaw_round_trip(samples: &mut [i16]) {
    for s in samples {
        *s = ulaw_decode(ulaw_encode(*s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_word_survives_decode_encode() {
        for code in 0..=255u8 {
            let u = ulaw_encode(ulaw_decode(code));
            // 0x7F and 0xFF both decode to 0 (µ-law has two zeros).
            assert!(
                u == code || ulaw_decode(u) == ulaw_decode(code),
                "ulaw {code:#x}"
            );
            assert_eq!(alaw_encode(alaw_decode(code)), code, "alaw {code:#x}");
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0x00), -32_124);
        assert_eq!(ulaw_decode(0x80), 32_124);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
    }

    #[test]
    fn quantisation_error_is_bounded() {
        for x in (-32_000i32..32_000).step_by(7) {
            let s = x as i16;
            let err_u = (ulaw_decode(ulaw_encode(s)) as i32 - x).abs();
            let err_a = (alaw_decode(alaw_encode(s)) as i32 - x).abs();
            // Both laws keep the relative error within a segment step (~3 %) plus the zero zone.
            let bound = x.abs() / 16 + 16;
            assert!(err_u <= bound, "ulaw {x}: {err_u}");
            assert!(err_a <= bound, "alaw {x}: {err_a}");
        }
    }
}
