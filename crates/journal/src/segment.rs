//! Segment files: an 8-byte header, then frames of `[len: u32 LE][crc32c: u32 LE][payload]`.
//! The checksum covers the length bytes and the payload, so a torn length is caught too.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{JournalError, MAX_RECORD_BYTES, Position};

pub const HEADER: &[u8; 8] = b"OTJRNL01";
pub const HEADER_LEN: u64 = HEADER.len() as u64;
pub const FRAME_OVERHEAD: u64 = 8;

pub fn segment_path(dir: &Path, base: Position) -> PathBuf {
    dir.join(segment_file_name(base))
}

/// The file name of the segment whose first position is `base`.
pub fn segment_file_name(base: Position) -> String {
    format!("{base:020}.seg")
}

pub fn parse_segment_name(name: &str) -> Option<Position> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
}

fn checksum(len_bytes: &[u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), payload)
}

/// Appends one encoded frame to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    let len_bytes = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&checksum(&len_bytes, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The outcome of decoding the frame at the front of a buffer.
pub enum Decoded<'a> {
    Frame {
        payload: &'a [u8],
        len: u64,
    },
    /// The buffer ends inside the frame: read more (or, at the end of a file, a torn tail).
    Incomplete {
        needed: u64,
    },
    Corrupt(&'static str),
}

pub fn decode_frame(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < FRAME_OVERHEAD as usize {
        return Decoded::Incomplete { needed: FRAME_OVERHEAD };
    }
    let len_bytes: [u8; 4] = buf[0..4].try_into().expect("four bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_RECORD_BYTES {
        return Decoded::Corrupt("length beyond the record limit");
    }
    let total = FRAME_OVERHEAD as usize + len;
    if buf.len() < total {
        return Decoded::Incomplete { needed: total as u64 };
    }
    let stored = u32::from_le_bytes(buf[4..8].try_into().expect("four bytes"));
    let payload = &buf[8..total];
    if stored != checksum(&len_bytes, payload) {
        return Decoded::Corrupt("checksum mismatch");
    }
    Decoded::Frame { payload, len: total as u64 }
}

/// Reads a segment file through a window of cached bytes, so the byte-by-byte resync after a
/// bad frame costs memory copies, not a system call per byte.
struct Window<'a> {
    file: &'a File,
    path: &'a Path,
    /// Frame bytes (after the header) that may be read: `[0, limit)`.
    limit: u64,
    start: u64,
    buf: Vec<u8>,
}

const WINDOW_BYTES: u64 = 1 << 20;

impl<'a> Window<'a> {
    /// `len` bytes at data offset `offset`; the caller keeps `offset + len <= limit`.
    fn get(&mut self, offset: u64, len: u64) -> Result<&[u8], JournalError> {
        debug_assert!(offset + len <= self.limit, "window read past the segment's limit");
        let cached = offset >= self.start && offset + len <= self.start + self.buf.len() as u64;
        if !cached {
            let want = len.max(WINDOW_BYTES).min(self.limit - offset);
            self.buf.resize(want as usize, 0);
            self.file.read_exact_at(&mut self.buf, HEADER_LEN + offset).map_err(JournalError::io(self.path))?;
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        Ok(&self.buf[from..from + len as usize])
    }

    /// The length of the frame whose header is at `offset` if it is plausible: within the
    /// record limit and inside the segment. `nearby` reads through the window (the scan's own
    /// position); otherwise four bytes are read on their own so the window does not jump.
    fn plausible_len(&mut self, offset: u64, nearby: bool) -> Result<Option<u64>, JournalError> {
        Ok(self
            .declared_len(offset, nearby)?
            .filter(|&len| len <= MAX_RECORD_BYTES as u64 && offset + FRAME_OVERHEAD + len <= self.limit))
    }

    /// The length the frame header at `offset` declares, if a whole header fits before the
    /// limit.
    fn declared_len(&mut self, offset: u64, nearby: bool) -> Result<Option<u64>, JournalError> {
        if self.limit - offset < FRAME_OVERHEAD {
            return Ok(None);
        }
        let cached = offset >= self.start && offset + 4 <= self.start + self.buf.len() as u64;
        let head: [u8; 4] = if nearby || cached {
            self.get(offset, 4)?.try_into().expect("four bytes")
        } else {
            let mut head = [0u8; 4];
            self.file.read_exact_at(&mut head, HEADER_LEN + offset).map_err(JournalError::io(self.path))?;
            head
        };
        Ok(Some(u64::from(u32::from_le_bytes(head))))
    }

    /// Whether what starts at `offset` is the beginning of a frame cut off by the limit: less
    /// than a header, or a header whose (plausible) frame runs past the limit.
    fn cut_off_at(&mut self, offset: u64) -> Result<bool, JournalError> {
        Ok(match self.declared_len(offset, false)? {
            None => true,
            Some(len) => len <= MAX_RECORD_BYTES as u64 && offset + FRAME_OVERHEAD + len > self.limit,
        })
    }

    /// Whether a whole valid frame starts at `offset`; `Some(frame length)` if so.
    fn frame_at(&mut self, offset: u64) -> Result<Option<u64>, JournalError> {
        let Some(len) = self.plausible_len(offset, true)? else { return Ok(None) };
        let frame = self.get(offset, FRAME_OVERHEAD + len)?;
        Ok(matches!(decode_frame(frame), Decoded::Frame { .. }).then_some(FRAME_OVERHEAD + len))
    }

    /// The first offset at or after `from` where the frames line up again: a valid frame that
    /// is followed by another valid frame, or that ends exactly at the limit or where a frame
    /// cut off by the limit begins (an intact frame just before a torn tail is kept). Two
    /// checksums must agree by chance for a false resync (about 2^-64), one and a plausible
    /// length otherwise. Both headers are checked for plausibility before any checksum is
    /// computed, so random bytes cost about one comparison per offset.
    fn resync(&mut self, from: u64) -> Result<Option<u64>, JournalError> {
        for candidate in from..self.limit {
            let Some(len) = self.plausible_len(candidate, true)? else { continue };
            let next = candidate + FRAME_OVERHEAD + len;
            let ends_here = next == self.limit || self.cut_off_at(next)?;
            if !ends_here && self.plausible_len(next, false)?.is_none() {
                continue;
            }
            if self.frame_at(candidate)?.is_none() {
                continue;
            }
            if ends_here || self.frame_at(next)?.is_some() {
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }
}

/// What to do with bad bytes that no intact frame follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// The active segment at open: they are the torn tail of an unfinished append.
    Torn,
    /// A sealed segment, or committed bytes: they are damage.
    Damaged,
}

/// The result of scanning a segment's frames; offsets are relative to the first frame byte.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Intact frames found.
    pub frames: u64,
    /// Damaged `(offset, length)` ranges, ascending, with intact frames after each.
    pub damaged: Vec<(u64, u64)>,
    /// Where a torn tail starts (only with [`Tail::Torn`]).
    pub torn_from: Option<u64>,
}

/// Scans the frames of `[0, limit)` of a segment file, resyncing after every bad frame.
pub fn scan(file: &File, path: &Path, limit: u64, tail: Tail) -> Result<Scan, JournalError> {
    let mut window = Window { file, path, limit, start: 0, buf: Vec::new() };
    let mut result = Scan::default();
    let mut offset = 0;
    while offset < limit {
        if let Some(len) = window.frame_at(offset)? {
            result.frames += 1;
            offset += len;
            continue;
        }
        match window.resync(offset + 1)? {
            Some(next) => {
                result.damaged.push((offset, next - offset));
                offset = next;
            }
            None if tail == Tail::Torn => {
                result.torn_from = Some(offset);
                break;
            }
            None => {
                result.damaged.push((offset, limit - offset));
                offset = limit;
            }
        }
    }
    debug_assert!(result.damaged.windows(2).all(|w| w[0].0 + w[0].1 < w[1].0), "ranges ascend, apart");
    Ok(result)
}

/// Whether the file starts with the segment header.
pub fn header_ok(file: &File) -> bool {
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0).is_ok() && &header == HEADER
}

/// Data bytes (after the header) a segment file holds.
pub fn data_len(file: &File, path: &Path) -> Result<u64, JournalError> {
    Ok(file.metadata().map_err(JournalError::io(path))?.len().saturating_sub(HEADER_LEN))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn segment_of(frames: &[&[u8]]) -> (tempfile::NamedTempFile, Vec<u64>) {
        let mut bytes = HEADER.to_vec();
        let mut offsets = Vec::new();
        for frame in frames {
            offsets.push(bytes.len() as u64 - HEADER_LEN);
            encode_frame(frame, &mut bytes);
        }
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        (file, offsets)
    }

    fn limit(file: &tempfile::NamedTempFile) -> u64 {
        data_len(file.as_file(), file.path()).unwrap()
    }

    #[test]
    fn an_intact_segment_scans_clean() {
        let (file, _) = segment_of(&[b"a", b"bb", b""]);
        let scan = scan(file.as_file(), file.path(), limit(&file), Tail::Damaged).unwrap();
        assert_eq!(scan, Scan { frames: 3, damaged: vec![], torn_from: None });
    }

    #[test]
    fn a_flipped_byte_costs_exactly_its_frame() {
        let (file, offsets) = segment_of(&[b"first", b"second", b"third", b"fourth"]);
        file.as_file().write_all_at(b"X", HEADER_LEN + offsets[1] + 9).unwrap();
        for tail in [Tail::Torn, Tail::Damaged] {
            let scan = scan(file.as_file(), file.path(), limit(&file), tail).unwrap();
            assert_eq!(scan.frames, 3);
            assert_eq!(scan.damaged, vec![(offsets[1], offsets[2] - offsets[1])]);
            assert_eq!(scan.torn_from, None);
        }
    }

    #[test]
    fn bad_bytes_at_the_end_are_torn_or_damaged_by_policy() {
        let (file, offsets) = segment_of(&[b"first", b"second"]);
        let end = limit(&file);
        file.as_file().write_all_at(&[0xFF], HEADER_LEN + offsets[1] + 8).unwrap();
        let torn = scan(file.as_file(), file.path(), end, Tail::Torn).unwrap();
        assert_eq!((torn.frames, torn.torn_from), (1, Some(offsets[1])));
        let sealed = scan(file.as_file(), file.path(), end, Tail::Damaged).unwrap();
        assert_eq!(sealed.damaged, vec![(offsets[1], end - offsets[1])]);
    }

    #[test]
    fn an_intact_frame_between_damage_and_a_torn_tail_is_kept() {
        // B damaged, C intact, D torn (the file ends inside it).
        let (file, offsets) = segment_of(&[b"first", b"damaged", b"intact", b"torn at the end"]);
        file.as_file().write_all_at(b"X", HEADER_LEN + offsets[1] + 9).unwrap();
        let torn_end = offsets[3] + 12;
        file.as_file().set_len(HEADER_LEN + torn_end).unwrap();
        let scan = scan(file.as_file(), file.path(), torn_end, Tail::Torn).unwrap();
        assert_eq!(scan.frames, 2, "first and intact");
        assert_eq!(scan.damaged, vec![(offsets[1], offsets[2] - offsets[1])]);
        assert_eq!(scan.torn_from, Some(offsets[3]));
        // Cut even inside D's header, C is still kept.
        let inside_header = offsets[3] + 3;
        let scan = scan_inside(&file, inside_header);
        assert_eq!((scan.frames, scan.torn_from), (2, Some(offsets[3])));
    }

    fn scan_inside(file: &tempfile::NamedTempFile, end: u64) -> Scan {
        file.as_file().set_len(HEADER_LEN + end).unwrap();
        scan(file.as_file(), file.path(), end, Tail::Torn).unwrap()
    }
}
