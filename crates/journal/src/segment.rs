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
    dir.join(format!("{base:020}.seg"))
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

/// Scans a segment from its header to the first byte that is not a whole valid frame.
/// Returns the length of the valid prefix in frame bytes (excluding the header).
pub fn scan_valid_prefix(file: &File, path: &Path) -> Result<u64, JournalError> {
    let size = file.metadata().map_err(JournalError::io(path))?.len();
    if size < HEADER_LEN {
        return Ok(0);
    }
    let mut offset = HEADER_LEN;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let available = (size - offset).min(buf.len() as u64) as usize;
        if available == 0 {
            return Ok(offset - HEADER_LEN);
        }
        file.read_exact_at(&mut buf[..available], offset).map_err(JournalError::io(path))?;
        let mut consumed = 0usize;
        loop {
            match decode_frame(&buf[consumed..available]) {
                Decoded::Frame { len, .. } => consumed += len as usize,
                Decoded::Incomplete { needed } => {
                    if offset + consumed as u64 + needed > size {
                        // The file ends inside this frame: a torn tail.
                        return Ok(offset + consumed as u64 - HEADER_LEN);
                    }
                    if needed as usize > buf.len() {
                        buf.resize(needed as usize, 0);
                    }
                    break;
                }
                Decoded::Corrupt(_) => return Ok(offset + consumed as u64 - HEADER_LEN),
            }
        }
        offset += consumed as u64;
    }
}
