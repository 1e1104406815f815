//! Discs for cd logical units: opening an image as a disc, and the medium change of
//! `--op update --mode logicalunit` (`media=PATH` loads, `media=` or `eject=1` takes the
//! disc out; tgt's `path=PATH` is `media=PATH`; `force=1` overrides an initiator's
//! PREVENT ALLOW MEDIUM REMOVAL).

use rtgt_scsi::ScsiError;

use crate::error::AdmError;
use crate::params::truthy;

/// What an update asks of a cd LU's drive.
pub(crate) enum Change {
    Load(String),
    Eject,
}

/// Takes the medium keys out of `params`: the change asked for, if any, and `force`.
pub(crate) fn take_change(
    params: &mut Vec<(String, String)>,
) -> Result<(Option<Change>, bool), AdmError> {
    let mut change = None;
    let mut force = false;
    let mut rest = Vec::new();
    for (k, v) in params.drain(..) {
        match k.trim().to_ascii_lowercase().as_str() {
            "media" | "path" if v.trim().is_empty() => change = Some(Change::Eject),
            "media" | "path" => change = Some(Change::Load(v.trim().to_string())),
            "eject" if truthy(&v) => change = Some(Change::Eject),
            "eject" => {}
            "force" => force = truthy(&v),
            _ => rest.push((k, v)),
        }
    }
    *params = rest;
    if force && change.is_none() {
        return Err(AdmError::invalid(
            "force=1 goes with media=PATH or eject=1 (it overrides an initiator's prevention of medium removal)",
        ));
    }
    Ok((change, force))
}

pub(crate) fn medium_err(e: ScsiError) -> AdmError {
    match e {
        ScsiError::MediumRemovalPrevented(_) => AdmError::Busy(e.to_string()),
        other => AdmError::Invalid(other.to_string()),
    }
}
