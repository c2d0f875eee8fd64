//! Recognising (compressed) tarballs by their magic bytes.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;

use super::error::ImageError;

/// Size of a tar header block.
const BLOCK: usize = 512;

/// How an image file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// A plain tarball.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
}

/// Opens `path` as a tar stream: detects gzip, xz or plain tar by magic bytes and checks
/// that the (decompressed) stream starts with a tar header.
///
/// Returns the stream (positioned at the start of the tar data) and the compression found.
pub(crate) fn open_tar(path: &Path) -> Result<(Box<dyn Read>, Compression), ImageError> {
    let mut file = File::open(path).map_err(ImageError::io("open", path))?;
    let mut magic = [0u8; 6];
    let n = read_up_to(&mut file, &mut magic).map_err(ImageError::io("read", path))?;
    let magic = &magic[..n];
    let head = Cursor::new(magic.to_vec());
    let raw = head.chain(file);

    let (decoded, compression): (Box<dyn Read>, _) = if magic.starts_with(&[0x1f, 0x8b]) {
        (
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(raw))),
            Compression::Gzip,
        )
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        (
            Box::new(xz2::read::XzDecoder::new_multi_decoder(BufReader::new(raw))),
            Compression::Xz,
        )
    } else if magic.starts_with(b"BZh") {
        return Err(unsupported(path, "bzip2"));
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(unsupported(path, "zstd"));
    } else if magic.starts_with(&[0x5d, 0x00, 0x00]) {
        return Err(unsupported(path, "lzma"));
    } else if magic.starts_with(b"hsqs") {
        return Err(ImageError::Squashfs {
            path: path.to_path_buf(),
        });
    } else {
        (Box::new(BufReader::new(raw)), Compression::None)
    };

    // Peek at the first tar header of the decoded stream and put it back.
    let mut decoded = decoded;
    let mut first = vec![0u8; BLOCK];
    let n = read_up_to(&mut decoded, &mut first).map_err(|source| match compression {
        Compression::None => ImageError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        },
        _ => ImageError::CorruptTarball {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if n < BLOCK || !is_tar_header(&first) {
        return Err(ImageError::NotATarball {
            path: path.to_path_buf(),
        });
    }
    Ok((Box::new(Cursor::new(first).chain(decoded)), compression))
}

fn unsupported(path: &Path, compression: &'static str) -> ImageError {
    ImageError::UnsupportedCompression {
        path: path.to_path_buf(),
        compression,
    }
}

/// A ustar/GNU header (`ustar` magic at 257 and a valid checksum) or the all-zero end block
/// of an empty archive.
fn is_tar_header(block: &[u8]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return true;
    }
    if &block[257..262] != b"ustar" {
        return false;
    }
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let computed: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == Some(computed)
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
