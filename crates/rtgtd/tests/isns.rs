//! iSNS (RFC 4171): rtgtd `--isns` registers its targets and portals with Debian's
//! open-isns server (isnsd, started here on loopback), `isnsadm --query` lists them,
//! a deleted target disappears, and a stop deregisters the entity.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Daemon, TempDir};

/// isnsd in the foreground on 127.0.0.1:PORT with its database and control socket in
/// `dir`; killed (by pid) when dropped.
struct Isnsd {
    child: Child,
}

impl Drop for Isnsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_isnsd(dir: &Path, port: u16) -> Isnsd {
    let db = dir.join("db");
    std::fs::create_dir_all(&db).unwrap();
    let conf = dir.join("isnsd.conf");
    std::fs::write(
        &conf,
        format!(
            "SourceName = isns.rtgt.test\nBindAddress = 127.0.0.1:{port}\n\
             Database = {}\nSLPRegister = 0\nSecurity = 0\nPIDFile = {}\n\
             ControlSocket = {}\nDefaultDiscoveryDomain = 1\n",
            db.display(),
            dir.join("isnsd.pid").display(),
            dir.join("control").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("isnsadm.conf"),
        format!(
            "SourceName = isns.rtgt.admin\nServerAddress = 127.0.0.1:{port}\nSecurity = 0\n\
             ControlSocket = {}\n",
            dir.join("control").display()
        ),
    )
    .unwrap();
    let child = Command::new("isnsd")
        .args(["-f", "-4", "-c", conf.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("isnsd");
    let until = Instant::now() + Duration::from_secs(10);
    while !common::port_accepts(port) {
        assert!(Instant::now() < until, "isnsd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Isnsd { child }
}

/// `isnsadm --local --query iscsi-name` (as the server's control node: sees all).
fn query(dir: &Path) -> String {
    let o = common::tool(
        "isnsadm",
        &[
            "-c",
            dir.join("isnsadm.conf").to_str().unwrap(),
            "--local",
            "--query",
            "iscsi-name",
        ],
    );
    common::text(&o.stdout) + &common::text(&o.stderr)
}

/// Polls `query` until `pred` holds (registration follows a change within ms).
fn wait_query(dir: &Path, pred: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let q = query(dir);
        if pred(&q) || Instant::now() > until {
            return q;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn targets_are_registered_with_isnsd_and_deregistered_on_stop() {
    if !common::have_tool("isnsd") || !common::have_tool("isnsadm") {
        return;
    }
    let dir = TempDir::new("isns");
    let isns_port = free_port();
    let _isnsd = start_isnsd(dir.path(), isns_port);
    let (one, two) = (
        "iqn.2026-11.org.example:isns-one",
        "iqn.2026-11.org.example:isns-two",
    );
    // The server named in the configuration file; target one comes from it too.
    let conf = dir.join("rtgt.toml");
    std::fs::write(
        &conf,
        format!(
            "[daemon]\nisns = \"127.0.0.1:{isns_port}\"\n\n[[target]]\ntid = 1\n\
             name = \"{one}\"\ninitiator_address = [\"ALL\"]\n"
        ),
    )
    .unwrap();
    let mut d = Daemon::start_args(&["--config", conf.to_str().unwrap()]);
    d.new_target("2", two);
    // A dump keeps the setting.
    let dump = d.adm_ok(&["config", "dump"]);
    assert!(
        dump.contains(&format!("isns = \"127.0.0.1:{isns_port}\"")),
        "{dump}"
    );
    let q = wait_query(dir.path(), |q| q.contains(one) && q.contains(two));
    assert!(q.contains(&format!("iSCSI name = \"{one}\"")), "{q}");
    assert!(q.contains(&format!("iSCSI name = \"{two}\"")), "{q}");
    assert!(q.contains("iSCSI node type = Target"), "{q}");
    // The portal, with its port and portal group tag.
    assert!(
        q.contains(&format!("Portal TCP/UDP port = {}/tcp", d.port)),
        "{q}"
    );
    assert!(q.contains("Portal group tag = 1"), "{q}");
    // A deleted target goes from the server too.
    d.adm_ok(&["--op", "delete", "--mode", "target", "--tid", "2"]);
    let q = wait_query(dir.path(), |q| !q.contains(two));
    assert!(!q.contains(two) && q.contains(one), "{q}");
    // Stop: deregistered.
    let st = d.stop().unwrap();
    assert!(st.success());
    let q = query(dir.path());
    assert!(!q.contains(one), "still registered after the stop: {q}");
    assert!(d.log().contains("iSNS: deregistered"), "{}", d.log());
}
