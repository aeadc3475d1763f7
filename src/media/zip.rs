//! A ZIP archive written as a stream, entries stored (not compressed: pictures and
//! narration are compressed already, and an EPUB's `mimetype` must be stored): each
//! entry's local header is made from its size and CRC-32, known before its bytes are
//! sent, and the central directory comes at the end. No data descriptors, no ZIP64 (a
//! picture book is far below 4 GiB; larger is refused). Used by the EPUB book
//! (`domain::book`), which sends each piece as it is made.

/// What the central directory needs of each entry.
struct Entry {
    name: String,
    crc: u32,
    size: u32,
    offset: u32,
}

/// The archive's bookkeeping; the caller sends the bytes it returns, in order.
#[derive(Default)]
pub struct Zip {
    entries: Vec<Entry>,
    offset: u64,
}

/// Too large for a ZIP without ZIP64.
#[derive(Debug)]
pub struct TooLarge;

/// 1 January 2026, 00:00 in MS-DOS form: every entry carries it (a book's bytes do not
/// depend on when it was downloaded).
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = ((2026 - 1980) << 9) | (1 << 5) | 1;

impl Zip {
    /// The local header of the next entry, `name` (ASCII), of `size` bytes with CRC-32
    /// `crc`; its bytes must follow, exactly `size` of them.
    pub fn entry(&mut self, name: &str, crc: u32, size: u64) -> Result<Vec<u8>, TooLarge> {
        let size32 = u32::try_from(size).map_err(|_| TooLarge)?;
        let offset = u32::try_from(self.offset).map_err(|_| TooLarge)?;
        let mut h = Vec::with_capacity(30 + name.len());
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        h.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        h.extend_from_slice(&0u16.to_le_bytes()); // flags
        h.extend_from_slice(&0u16.to_le_bytes()); // stored
        h.extend_from_slice(&DOS_TIME.to_le_bytes());
        h.extend_from_slice(&DOS_DATE.to_le_bytes());
        h.extend_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&size32.to_le_bytes());
        h.extend_from_slice(&size32.to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes()); // no extra field
        h.extend_from_slice(name.as_bytes());
        self.offset += h.len() as u64 + size;
        if self.offset > u64::from(u32::MAX) {
            return Err(TooLarge);
        }
        self.entries.push(Entry {
            name: name.to_string(),
            crc,
            size: size32,
            offset,
        });
        Ok(h)
    }

    /// A whole entry in memory: its header and its bytes.
    pub fn file(&mut self, name: &str, bytes: &[u8]) -> Result<Vec<u8>, TooLarge> {
        let mut out = self.entry(name, crc32fast::hash(bytes), bytes.len() as u64)?;
        out.extend_from_slice(bytes);
        Ok(out)
    }

    /// The central directory and its end record: the archive's last bytes.
    pub fn finish(self) -> Result<Vec<u8>, TooLarge> {
        let start = u32::try_from(self.offset).map_err(|_| TooLarge)?;
        let mut out = Vec::new();
        for e in &self.entries {
            out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            out.extend_from_slice(&20u16.to_le_bytes()); // made by: 2.0, MS-DOS
            out.extend_from_slice(&20u16.to_le_bytes()); // needed
            out.extend_from_slice(&0u16.to_le_bytes()); // flags
            out.extend_from_slice(&0u16.to_le_bytes()); // stored
            out.extend_from_slice(&DOS_TIME.to_le_bytes());
            out.extend_from_slice(&DOS_DATE.to_le_bytes());
            out.extend_from_slice(&e.crc.to_le_bytes());
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
            out.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(e.name.as_bytes());
        }
        let size = u32::try_from(out.len()).map_err(|_| TooLarge)?;
        let count = u16::try_from(self.entries.len()).map_err(|_| TooLarge)?;
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // this disk, the directory's disk
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // no comment
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the archive back by its central directory, as readers do.
    fn read(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let end = archive.len() - 22;
        assert_eq!(&archive[end..end + 4], &0x0605_4b50u32.to_le_bytes());
        let u16_at = |i: usize| u16::from_le_bytes([archive[i], archive[i + 1]]) as usize;
        let u32_at = |i: usize| {
            u32::from_le_bytes([archive[i], archive[i + 1], archive[i + 2], archive[i + 3]])
                as usize
        };
        let (count, mut at) = (u16_at(end + 10), u32_at(end + 16));
        let mut out = Vec::new();
        for _ in 0..count {
            let (crc, size, name_len, offset) = (
                u32_at(at + 16),
                u32_at(at + 24),
                u16_at(at + 28),
                u32_at(at + 42),
            );
            let name = String::from_utf8(archive[at + 46..at + 46 + name_len].to_vec()).unwrap();
            assert_eq!(u32_at(offset), 0x0403_4b50);
            assert_eq!(u16_at(offset + 26), name_len);
            let data = &archive[offset + 30 + name_len..offset + 30 + name_len + size];
            assert_eq!(crc32fast::hash(data) as usize, crc, "{name}");
            out.push((name, data.to_vec()));
            at += 46 + name_len;
        }
        out
    }

    #[test]
    fn entries_read_back_by_the_central_directory() {
        let mut zip = Zip::default();
        let mut archive = zip.file("mimetype", b"application/epub+zip").unwrap();
        let big = vec![7u8; 70_000];
        archive.extend(
            zip.entry("a/b.bin", crc32fast::hash(&big), big.len() as u64)
                .unwrap(),
        );
        archive.extend_from_slice(&big);
        archive.extend(zip.file("empty", b"").unwrap());
        archive.extend(zip.finish().unwrap());
        // The mimetype first, stored, at offset 30 (what EPUB readers sniff).
        assert_eq!(&archive[30..38], b"mimetype");
        assert_eq!(&archive[38..58], b"application/epub+zip");
        let entries = read(&archive);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1], ("a/b.bin".to_string(), big));
        assert!(entries[2].1.is_empty());
    }
}
