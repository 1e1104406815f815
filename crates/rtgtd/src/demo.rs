//! `rtgtd --demo`: a sparse 1 GiB disk image served as one target with one LUN, so a
//! person can try rtgt with nothing else set up. Configured through the registry like
//! any rtgtadm request.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rtgt_target::control::Request;
use rtgt_target::Registry;

pub const DEMO_TARGET: &str = "iqn.2026-11.org.rtgt:demo";
const DEMO_SIZE: u64 = 1 << 30;

pub fn setup(registry: &Registry, state_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("state directory {}", state_dir.display()))?;
    let image = state_dir.join("demo.img");
    if !image.exists() {
        let f = std::fs::File::create(&image)
            .with_context(|| format!("demo image {}", image.display()))?;
        f.set_len(DEMO_SIZE)
            .with_context(|| format!("demo image {}", image.display()))?;
    }
    let requests = [
        Request {
            lld: "iscsi".into(),
            mode: "target".into(),
            op: "new".into(),
            tid: Some(1),
            targetname: Some(DEMO_TARGET.into()),
            ..Default::default()
        },
        Request {
            lld: "iscsi".into(),
            mode: "logicalunit".into(),
            op: "new".into(),
            tid: Some(1),
            lun: Some(1),
            backing_store: Some(image.display().to_string()),
            ..Default::default()
        },
        Request {
            lld: "iscsi".into(),
            mode: "target".into(),
            op: "bind".into(),
            tid: Some(1),
            initiator_address: Some("ALL".into()),
            ..Default::default()
        },
    ];
    for req in requests {
        let resp = registry.handle(req);
        if resp.code != 0 {
            bail!("demo setup: {}", resp.message);
        }
    }
    tracing::info!("demo: {DEMO_TARGET} LUN 1 = {}", image.display());
    Ok(())
}
