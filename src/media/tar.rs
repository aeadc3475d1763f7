//! A ustar archive written as a stream: a 512-byte header per file, the file, zeros to
//! the next 512 bytes, and two zero blocks at the end. Used by the guardian's export
//! (`domain::export`), which sends each piece as it is made, so a family's whole archive
//! is never held in memory.

/// The ustar header of a regular file `name` (ASCII, at most 100 bytes: the export's
/// names are ids) of `size` bytes, modified at `mtime` (Unix seconds).
pub fn header(name: &str, size: u64, mtime: i64) -> Option<[u8; 512]> {
    if name.is_empty() || name.len() > 100 || !name.is_ascii() || name.contains('\0') {
        return None;
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    // 11 octal digits: up to 8 GiB, more than any file here.
    if size >= 1 << 33 {
        return None;
    }
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime.max(0) as u64);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..272].copy_from_slice(b"jjongal");
    h[297..304].copy_from_slice(b"jjongal");
    // The checksum is summed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let field = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(field.as_bytes());
    Some(h)
}

/// Writes `value` as zero-padded octal digits and a NUL into `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// The zeros after a file of `size` bytes, up to the next 512-byte boundary.
pub fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

/// The end of the archive: two zero blocks.
pub const END: [u8; 1024] = [0; 1024];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_has_its_fields_and_checksum() {
        let h = header("stories/a/story.json", 1234, 1_700_000_000).unwrap();
        assert!(h.starts_with(b"stories/a/story.json\0"));
        assert_eq!(&h[124..136], b"00000002322\0");
        assert_eq!(&h[257..263], b"ustar\0");
        assert_eq!(h[156], b'0');
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut blank = h;
        blank[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, blank.iter().map(|&b| u32::from(b)).sum::<u32>());
        assert_eq!(padding(1234), 512 * 3 - 1234);
        assert_eq!(padding(1024), 0);
    }

    #[test]
    fn names_that_do_not_fit_are_refused() {
        assert!(header(&"a".repeat(101), 1, 0).is_none());
        assert!(header("café", 1, 0).is_none());
        assert!(header("", 1, 0).is_none());
        assert!(header("big", 1 << 33, 0).is_none());
    }
}
