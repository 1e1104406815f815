//! Guest memory (vm-memory's mmap of the regions QEMU shared) as rtgt-virtio's checked
//! `GuestMem`: a range partly outside every region moves nothing.

use rtgt_virtio::GuestMem;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

pub struct Guest<'a>(pub &'a GuestMemoryMmap<()>);

impl GuestMem for Guest<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.0.read_slice(buf, GuestAddress(addr)).is_ok()
    }
    fn write(&self, addr: u64, data: &[u8]) -> bool {
        self.0.write_slice(data, GuestAddress(addr)).is_ok()
    }
    fn contains(&self, addr: u64, len: u64) -> bool {
        usize::try_from(len).is_ok_and(|l| {
            GuestMemory::check_range(self.0, GuestAddress(addr), l, Permissions::ReadWrite)
        })
    }
}
