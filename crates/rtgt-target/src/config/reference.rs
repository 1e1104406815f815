//! The configuration file's reference, printed by `rtgtadm config --help` and written
//! as the rtgt.toml(5) man page: one text, so the two can't disagree.

/// Every key of the file, with what it means.
pub const REFERENCE: &str = "\
The configuration file is TOML. Keys are rtgtadm's long option names; unknown keys are
errors (FILE:LINE:COL: key `K`: what is wrong), and rtgtd refuses to start on them.

[daemon]                      optional; --iscsi portal= and --state-dir win over it
  portals = [\"IP:PORT\", \"[IPv6]:PORT,tpgt=N\"]   portals and their portal groups
  state_dir = \"DIR\"            where persistent reservations (APTPL) are kept
  isns = \"ADDR[:PORT]\"         iSNS server to register with (--isns)

[[account]]                   a CHAP account (--mode account --op new); repeatable
  user = \"NAME\"
  password = \"SECRET\"          12 bytes or more; the file then holds secrets (mode 0600)

[discovery]                   accounts discovery (SendTargets) sessions log in with
  incoming_user = [\"NAME\"]     CHAP required for discovery
  outgoing_user = \"NAME\"       the target's answer to mutual CHAP

[[target]]                    a target; repeatable
  tid = N                     1 and up, unique
  name = \"IQN\"                the iSCSI name, unique
  state = \"ready\"             or \"offline\" (no logins)
  initiator_address = [\"ALL\", \"ADDR\", \"ADDR/PREFIX\"]   who may log in (-I)
  initiator_name = [\"IQN\"]                         ... or by initiator name (-Q)
  incoming_user = [\"NAME\"]    accounts initiators authenticate as (CHAP required)
  outgoing_user = \"NAME\"      the account the target answers mutual CHAP with
  params = { KEY = VALUE }    iSCSI keys (MaxRecvDataSegmentLength, FirstBurstLength,
                              MaxBurstLength, InitialR2T, ImmediateData, HeaderDigest,
                              DataDigest, ...), MaxQueueCmd, nop_interval, nop_count,
                              RedirectAddress, RedirectPort, RedirectReason

[[target.lun]]                a LUN of the target above; repeatable
  lun = L                     1 and up (LUN 0 is the target's controller)
  backing_store = \"PATH\"      a file or block device (not for null / mem)
  bstype = \"rdwr\"             rdwr (default), io_uring (alias aio), mem, null
  bsoflags = \"sync\"           sync, direct, sync:direct
  blocksize = 512             logical block size: 512 or 4096
  device_type = \"disk\"
  size = \"1G\"                 size of a null / mem LU; for a file, resize it to this
  params = { KEY = VALUE }    LU parameters, tgt's names: vendor_id, product_id,
                              product_rev, scsi_id, scsi_sn, removable, readonly,
                              online, sense_format, thin_provisioning, write_cache,
                              nv_cache, physical_blocksize, lbppbe, sanitize_rate

Values may be strings, integers or booleans (true is tgt's 1). `rtgtd --config FILE`
loads it at start and SIGHUP applies it again; `rtgtadm config apply FILE` makes it
the running configuration live (--dry-run prints the plan); `rtgtadm config dump FILE`
and `rtgtd --save-config FILE` write the running configuration in this form.
";
