//! Mode pages of a disk and MODE SENSE / MODE SELECT (6) and (10) (SPC-4 6.11-6.14,
//! 7.5; SBC-4 6.5).

use crate::cdb::{byte, invalid_cdb, invalid_param, param_len_error, u16_at, u32_at, Outcome};
use crate::sense::{asc, Sense};

/// Page codes served.
pub(crate) const READ_WRITE_ERROR_RECOVERY: u8 = 0x01;
pub(crate) const CACHING: u8 = 0x08;
pub(crate) const CONTROL: u8 = 0x0a;
pub(crate) const ALL_PAGES: u8 = 0x3f;

/// The changeable mode parameters of one logical unit (shared by all I_T nexuses:
/// SPC-4 7.5.3 allows that, and rtgt keeps one set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModeState {
    /// Caching page WCE (SBC-4 6.5.5).
    pub wce: bool,
    /// WCE cannot change: the store is opened O_DSYNC (`--bsoflags sync`).
    pub wce_fixed: bool,
    /// Control page D_SENSE: descriptor-format sense (SPC-4 7.5.8).
    pub d_sense: bool,
    /// Control page SWP: software write protect (SPC-4 7.5.8, SBC-4 4.13).
    pub swp: bool,
}

/// Page control (SPC-4 table 97).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pc {
    Current,
    Changeable,
    Default,
}

/// What MODE SENSE reports besides the pages.
pub(crate) struct Medium {
    pub num_blocks: u64,
    pub block_size: u32,
    /// Write protected (readonly, read-only store or SWP): WP in the device-specific
    /// parameter (SBC-4 6.5.1).
    pub write_protected: bool,
}

fn page_bytes(code: u8, pc: Pc, cur: &ModeState, dflt: &ModeState) -> Vec<u8> {
    let state = match pc {
        Pc::Current => Some(cur),
        Pc::Default => Some(dflt),
        Pc::Changeable => None,
    };
    match code {
        READ_WRITE_ERROR_RECOVERY => {
            let mut p = vec![0u8; 12];
            p[0] = READ_WRITE_ERROR_RECOVERY;
            p[1] = 10;
            // Nothing is changeable; retry counts zero: the store does its own retries.
            p
        }
        CACHING => {
            let mut p = vec![0u8; 20];
            p[0] = CACHING;
            p[1] = 18;
            p[2] = match state {
                Some(s) => u8::from(s.wce) << 2,
                None if cur.wce_fixed => 0,
                None => 0x04, // WCE changeable
            };
            p
        }
        CONTROL => {
            let mut p = vec![0u8; 12];
            p[0] = CONTROL;
            p[1] = 10;
            match state {
                Some(s) => {
                    p[2] = u8::from(s.d_sense) << 2;
                    // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering, as commands
                    // run concurrently.
                    p[3] = 0x10;
                    p[4] = u8::from(s.swp) << 3;
                    // BUSY TIMEOUT PERIOD: unlimited.
                    p[8] = 0xff;
                    p[9] = 0xff;
                }
                None => {
                    p[2] = 0x04; // D_SENSE
                    p[4] = 0x08; // SWP
                }
            }
            p
        }
        _ => unreachable!("page_bytes of an unserved page"),
    }
}

const PAGES: [u8; 3] = [READ_WRITE_ERROR_RECOVERY, CACHING, CONTROL];

/// MODE SENSE (6) (`cdb[0] == 0x1a`) or (10) (`0x5a`): the full parameter data.
pub(crate) fn sense(cdb: &[u8], cur: &ModeState, dflt: &ModeState, m: &Medium) -> Outcome<Vec<u8>> {
    let ten = cdb[0] == 0x5a;
    let dbd = cdb[1] & 0x08 != 0;
    let llbaa = ten && cdb[1] & 0x10 != 0;
    let pc = match cdb[2] >> 6 {
        0 => Pc::Current,
        1 => Pc::Changeable,
        2 => Pc::Default,
        // SPC-4 6.11: saved values are not implemented.
        _ => {
            return Err(Sense::illegal(asc::SAVING_PARAMETERS_NOT_SUPPORTED).into());
        }
    };
    let code = cdb[2] & 0x3f;
    let subpage = cdb[3];
    let mut pages = Vec::new();
    match (code, subpage) {
        // 0xff asks for subpages too; none are served, so it is the same list.
        (ALL_PAGES, 0x00 | 0xff) => {
            for c in PAGES {
                pages.extend(page_bytes(c, pc, cur, dflt));
            }
        }
        (c, 0x00) if PAGES.contains(&c) => pages.extend(page_bytes(c, pc, cur, dflt)),
        _ => return Err(invalid_cdb()),
    }
    let mut bd = Vec::new();
    if !dbd {
        if llbaa {
            bd.extend_from_slice(&m.num_blocks.to_be_bytes());
            bd.extend_from_slice(&[0; 4]);
            bd.extend_from_slice(&m.block_size.to_be_bytes());
        } else {
            let n = u32::try_from(m.num_blocks).unwrap_or(u32::MAX);
            bd.extend_from_slice(&n.to_be_bytes());
            bd.push(0);
            bd.extend_from_slice(&m.block_size.to_be_bytes()[1..]);
        }
    }
    // Device-specific parameter: WP (bit 7), DPOFUA (bit 4) since DPO and FUA are
    // honoured (SBC-4 6.5.1).
    let dsp = (u8::from(m.write_protected) << 7) | 0x10;
    let mut out = Vec::new();
    if ten {
        let len = 6 + bd.len() + pages.len();
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.push(0);
        out.push(dsp);
        out.push(u8::from(llbaa));
        out.push(0);
        out.extend_from_slice(&(bd.len() as u16).to_be_bytes());
    } else {
        let len = 3 + bd.len() + pages.len();
        out.push(len.min(255) as u8);
        out.push(0);
        out.push(dsp);
        out.push(bd.len() as u8);
    }
    out.extend(bd);
    out.extend(pages);
    Ok(out)
}

/// MODE SELECT (6) (`0x15`) or (10) (`0x55`): validates `param` and returns the new
/// state. `param` is exactly PARAMETER LIST LENGTH bytes.
pub(crate) fn select(
    cdb: &[u8],
    param: &[u8],
    cur: &ModeState,
    block_size: u32,
) -> Outcome<ModeState> {
    let ten = cdb[0] == 0x55;
    // SP: saved pages are not implemented (SPC-4 6.9).
    if cdb[1] & 0x01 != 0 {
        return Err(invalid_cdb());
    }
    if param.is_empty() {
        return Ok(*cur);
    }
    let hdr = if ten { 8 } else { 4 };
    if param.len() < hdr {
        return Err(param_len_error());
    }
    let (bd_len, long) = if ten {
        (usize::from(u16_at(param, 6)), param[4] & 0x01 != 0)
    } else {
        (usize::from(param[3]), false)
    };
    if param.len() < hdr + bd_len {
        return Err(param_len_error());
    }
    // At most one block descriptor; its LOGICAL BLOCK LENGTH must be ours, as changing
    // the block size is not supported (SBC-4 6.5.2).
    let want = if long { 16 } else { 8 };
    match bd_len {
        0 => {}
        n if n == want => {
            let bd = &param[hdr..hdr + n];
            let len = if long {
                u32_at(bd, 12)
            } else {
                u32_at(bd, 4) & 0x00ff_ffff
            };
            if len != block_size {
                return Err(invalid_param());
            }
        }
        _ => return Err(invalid_param()),
    }
    let mut next = *cur;
    let mut rest = &param[hdr + bd_len..];
    while !rest.is_empty() {
        let b0 = rest[0];
        // PS is reserved in MODE SELECT (SPC-4 7.5.7).
        if b0 & 0x80 != 0 {
            return Err(invalid_param());
        }
        let spf = b0 & 0x40 != 0;
        let (plen, h) = if spf {
            if rest.len() < 4 {
                return Err(param_len_error());
            }
            (usize::from(u16_at(rest, 2)), 4)
        } else {
            if rest.len() < 2 {
                return Err(param_len_error());
            }
            (usize::from(rest[1]), 2)
        };
        if rest.len() < h + plen {
            return Err(param_len_error());
        }
        let code = b0 & 0x3f;
        if spf || !PAGES.contains(&code) {
            return Err(invalid_param());
        }
        let page = &rest[..h + plen];
        let ours = page_bytes(code, Pc::Current, &next, &next);
        if page.len() != ours.len() {
            return Err(invalid_param());
        }
        let mask = page_bytes(code, Pc::Changeable, &next, &next);
        // Bits that cannot change must be sent as they are (SPC-4 6.9).
        for i in 2..ours.len() {
            if (page[i] ^ ours[i]) & !mask[i] != 0 {
                return Err(invalid_param());
            }
        }
        match code {
            CACHING => next.wce = page[2] & 0x04 != 0,
            CONTROL => {
                next.d_sense = page[2] & 0x04 != 0;
                next.swp = page[4] & 0x08 != 0;
            }
            _ => {}
        }
        rest = &rest[h + plen..];
    }
    let _ = byte(param, 0); // MODE DATA LENGTH is reserved for MODE SELECT
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUR: ModeState = ModeState {
        wce: true,
        wce_fixed: false,
        d_sense: false,
        swp: false,
    };
    fn medium() -> Medium {
        Medium {
            num_blocks: 2048,
            block_size: 512,
            write_protected: false,
        }
    }

    #[test]
    fn sense6_all_pages_with_block_descriptor() {
        let d = sense(&[0x1a, 0, 0x3f, 0, 255, 0], &CUR, &CUR, &medium()).unwrap();
        assert_eq!(usize::from(d[0]) + 1, d.len());
        assert_eq!(d[2], 0x10);
        assert_eq!(d[3], 8);
        assert_eq!(u32_at(&d, 4), 2048);
        assert_eq!(u32_at(&d, 8) & 0xffffff, 512);
        assert_eq!(d[12], READ_WRITE_ERROR_RECOVERY);
        assert_eq!(d[24], CACHING);
        assert_eq!(d[26] & 0x04, 0x04);
        assert_eq!(d[44], CONTROL);
    }

    #[test]
    fn sense10_dbd_llbaa_changeable_and_errors() {
        let m = Medium {
            write_protected: true,
            ..medium()
        };
        let d = sense(&[0x5a, 0x10, 0x0a, 0, 0, 0, 0, 0, 255, 0], &CUR, &CUR, &m).unwrap();
        assert_eq!(usize::from(u16_at(&d, 0)) + 2, d.len());
        assert_eq!(d[3] & 0x80, 0x80);
        assert_eq!(d[4], 1);
        assert_eq!(u16_at(&d, 6), 16);
        let d = sense(&[0x5a, 0x08, 0x4a, 0, 0, 0, 0, 0, 255, 0], &CUR, &CUR, &m).unwrap();
        assert_eq!(u16_at(&d, 6), 0);
        assert_eq!(&d[8..10], &[0x0a, 10]);
        assert_eq!(d[10], 0x04);
        assert_eq!(d[12], 0x08);
        assert_eq!(
            sense(&[0x1a, 0, 0xc8, 0, 255, 0], &CUR, &CUR, &m),
            Err(Sense::illegal(asc::SAVING_PARAMETERS_NOT_SUPPORTED).into())
        );
        assert_eq!(
            sense(&[0x1a, 0, 0x02, 0, 255, 0], &CUR, &CUR, &m),
            Err(invalid_cdb())
        );
        assert_eq!(
            sense(&[0x1a, 0, 0x08, 1, 255, 0], &CUR, &CUR, &m),
            Err(invalid_cdb())
        );
    }

    #[test]
    fn select_changes_only_changeable_bits() {
        let mut ctl = page_bytes(CONTROL, Pc::Current, &CUR, &CUR);
        ctl[2] |= 0x04;
        ctl[4] |= 0x08;
        let mut p = vec![0, 0, 0, 0];
        p.extend(&ctl);
        let n = select(&[0x15, 0x10, 0, 0, p.len() as u8, 0], &p, &CUR, 512).unwrap();
        assert!(n.d_sense && n.swp && n.wce);
        // A non-changeable bit (QAM) differs.
        p[4 + 3] = 0x00;
        assert_eq!(
            select(&[0x15, 0x10, 0, 0, p.len() as u8, 0], &p, &CUR, 512),
            Err(invalid_param())
        );
        // Truncated page.
        assert_eq!(
            select(&[0x15, 0x10, 0, 0, 8, 0], &p[..8], &CUR, 512),
            Err(param_len_error())
        );
        // Wrong block length in the block descriptor.
        let mut q = vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0];
        assert_eq!(
            select(&[0x15, 0x10, 0, 0, 12, 0], &q, &CUR, 512),
            Err(invalid_param())
        );
        q[10] = 0x02;
        assert_eq!(select(&[0x15, 0x10, 0, 0, 12, 0], &q, &CUR, 512), Ok(CUR));
        // SP is not supported.
        assert_eq!(
            select(&[0x15, 0x11, 0, 0, 0, 0], &[], &CUR, 512),
            Err(invalid_cdb())
        );
        // Caching page: WCE off via MODE SELECT (10).
        let mut cache = page_bytes(CACHING, Pc::Current, &CUR, &CUR);
        cache[2] = 0;
        let mut p10 = vec![0u8; 8];
        p10.extend(&cache);
        let n = select(
            &[0x55, 0x10, 0, 0, 0, 0, 0, 0, p10.len() as u8, 0],
            &p10,
            &CUR,
            512,
        )
        .unwrap();
        assert!(!n.wce);
        // A store opened O_DSYNC: WCE is not changeable and stays 0.
        let sync = ModeState {
            wce: false,
            wce_fixed: true,
            ..CUR
        };
        let d = sense(&[0x1a, 0, 0x48, 0, 255, 0], &sync, &sync, &medium()).unwrap();
        assert_eq!(d[4 + 8 + 2] & 0x04, 0, "WCE not changeable");
        let mut on = page_bytes(CACHING, Pc::Current, &sync, &sync);
        on[2] |= 0x04;
        let mut p6 = vec![0u8; 4];
        p6.extend(&on);
        assert_eq!(
            select(&[0x15, 0x10, 0, 0, p6.len() as u8, 0], &p6, &sync, 512),
            Err(invalid_param())
        );
    }
}
