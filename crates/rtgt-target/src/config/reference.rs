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
  max_sessions = N            normal sessions over all targets; 0 or absent: no limit
  auth_fail_limit = N         failed logins per address and minute before a lockout
                              (default 5, 0: off)
  chap_algorithms = \"A,B\"     CHAP digests offered where a target sets none: MD5,
                              SHA1, SHA256, SHA3-256 (absent: all)

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
  max_sessions = N            sessions at once on this target (0 or absent: no limit)
  chap_algorithms = \"A,B\"     this target's CHAP digests (absent: the daemon's)
  alua_state = { TPGT = \"standby\" }   this daemon's target port groups' ALUA states
                              (active, nonoptimized, standby, unavailable; a group
                              absent is active/optimized); SET TARGET PORT GROUPS
                              from an initiator is saved here too
  alua_peer = { TPGT = \"active\" }     other gateways' groups reported with ours
  vhost_socket = [\"PATH\"]     vhost-user-scsi sockets serving this target to virtual
                              machines (--lld vhost --op bind --params socket=PATH)

[[target.lun]]                a LUN of the target above; repeatable
  lun = L                     1 and up (LUN 0 is the target's controller)
  backing_store = \"PATH\"      a file or block device (not for null / mem)
  bstype = \"rdwr\"             rdwr (default), io_uring (alias aio), mem, null, rbd,
                              glfs (rbd and glfs: cargo features of the same names);
                              sg, bsg (pt)
  bsoflags = \"sync\"           sync, direct, sync:direct
  blocksize = 512             logical block size: 512 or 4096
  device_type = \"disk\"        disk, cd, tape, changer, pt (pass-through: bstype sg or bsg)
  size = \"1G\"                 size of a null / mem LU; for a file, resize it to this
  params = { KEY = VALUE }    LU parameters, tgt's names: vendor_id, product_id,
                              product_rev, scsi_id, scsi_sn, removable, readonly,
                              online, sense_format, thin_provisioning, write_cache,
                              nv_cache, physical_blocksize, lbppbe, sanitize_rate;
                              pt: reservations, queue_depth, timeout
  bsopts = \"conf=PATH;id=USER\"  rbd: conf, id, cluster, timeout, cache; glfs:
                              logfile, loglevel, timeout; a change
                              creates the LU again (refused in use unless --force)
  initiators = [\"IQN\"]        LUN masking: only these initiators see the LUN
                              (--op bind --mode logicalunit -Q); absent: all
  changer = [\"LINE\", ...]     a changer's inventory as --params lines, in order:
                              media_home=DIR, element_type=N,start_address=A,quantity=Q,
                              element_type=4,address=A,tid=T,lun=L (a drive),
                              element_type=2,address=A,barcode=B (a cartridge in a
                              slot; element_type=4 for one in a drive, source=S for the
                              slot it came from, 0: none)

A cd LU's backing_store is its disc: a different disc (or none: the drive is empty)
is a medium change, not a new LU; a disc on a tray an initiator opened is saved as an
empty drive. A tape drive's backing_store is its cartridge (absent: empty).

With rtgtd --save-config FILE the file is also written when an initiator changes what
it keeps: MOVE MEDIUM / EXCHANGE MEDIUM of a changer, SET TARGET PORT GROUPS, a disc
loaded or ejected (START STOP UNIT, LOAD/UNLOAD MEDIUM). A tape an initiator unloaded
(LOAD UNLOAD) stays in its drive and comes back loaded after a restart.

Values may be strings, integers or booleans (true is tgt's 1). `rtgtd --config FILE`
loads it at start and SIGHUP applies it again; `rtgtadm config apply FILE` makes it
the running configuration live (--dry-run prints the plan); `rtgtadm config dump FILE`
and `rtgtd --save-config FILE` write the running configuration in this form.
";
