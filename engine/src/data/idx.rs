//! The IDX format (LeCun's MNIST files): a 4-byte magic `0 0 type ndims`, `ndims` big-endian
//! u32 dimensions, then the data. Only unsigned bytes (type 0x08) are read.

use std::path::Path;

use crate::error::{EngineError, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads and validates an IDX file of unsigned bytes with `ndims` dimensions.
pub fn read(path: &Path, ndims: u8) -> Result<IdxArray> {
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
    parse(path, bytes, ndims)
}

/// Validates `bytes` as an IDX array of unsigned bytes with `ndims` dimensions; errors name `path`.
pub fn parse(path: &Path, mut bytes: Vec<u8>, ndims: u8) -> Result<IdxArray> {
    let err = |message: String| EngineError::Idx { path: path.to_path_buf(), message };
    if bytes.len() < 4 {
        return Err(err(format!("truncated: {} bytes, too short for an IDX header", bytes.len())));
    }
    let expected_magic = [0, 0, 0x08, ndims];
    if bytes[..4] != expected_magic {
        return Err(err(format!(
            "wrong magic number 0x{:02x}{:02x}{:02x}{:02x}: expected 0x{:08x} (IDX, unsigned bytes, {ndims} dimensions)",
            bytes[0],
            bytes[1],
            bytes[2],
            bytes[3],
            u32::from_be_bytes(expected_magic)
        )));
    }
    let header = 4 + 4 * ndims as usize;
    if bytes.len() < header {
        return Err(err(format!("truncated: {} bytes, the header alone needs {header}", bytes.len())));
    }
    let dims: Vec<usize> = bytes[4..header].chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let want = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| err(format!("dimensions {dims:?} overflow")))?;
    let have = bytes.len() - header;
    if have < want {
        return Err(err(format!("truncated: dimensions {dims:?} need {want} data bytes, the file holds {have}")));
    }
    if have > want {
        return Err(err(format!("{} unexpected bytes after the {want} data bytes of dimensions {dims:?}", have - want)));
    }
    bytes.drain(..header);
    Ok(IdxArray { dims, data: bytes })
}
