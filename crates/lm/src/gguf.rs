//! GGUF reader (versions 2 and 3): metadata, tensor directory, and
//! dequantization to `f32` of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//! Q4_K and Q6_K blocks (ggml's reference layouts). Hand-written: the format is
//! small and the crates that read it bring a whole tensor framework.

use crate::error::{LmError, Result};
use half::f16;
use memmap2::Mmap;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// ggml tensor types this reader dequantizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q6K,
}

impl GgmlType {
    fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }
    /// (elements per block, bytes per block)
    fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q6K => (256, 210),
        }
    }
}

const SUPPORTED: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K";

/// One entry of the tensor directory.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Row-major shape (GGUF lists dims fastest-first; this is reversed).
    pub shape: Vec<usize>,
    pub type_id: u32,
    pub offset: u64,
}

/// An opened GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: HashMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    data_start: usize,
    mmap: Mmap,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: impl Into<String>) -> LmError {
        LmError::Gguf {
            path: self.path.to_path_buf(),
            msg: msg.into(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.pos.checked_add(n).is_none_or(|e| e > self.b.len()) {
            return Err(self.err(format!(
                "truncated: needed {n} bytes at offset {} of {}",
                self.pos,
                self.b.len()
            )));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn len(&mut self, what: &str) -> Result<usize> {
        let n = self.u64()?;
        if n > self.b.len() as u64 {
            return Err(self.err(format!("implausible {what} length {n}")));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String> {
        let n = self.len("string")?;
        let s = self.take(n)?;
        Ok(String::from_utf8_lossy(s).into_owned())
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<Value> {
        Ok(match ty {
            0 => Value::U64(self.u8()? as u64),
            1 => Value::I64(self.u8()? as i8 as i64),
            2 => Value::U64(self.u16()? as u64),
            3 => Value::I64(self.u16()? as i16 as i64),
            4 => Value::U64(self.u32()? as u64),
            5 => Value::I64(self.u32()? as i32 as i64),
            6 => Value::F64(f32::from_bits(self.u32()?) as f64),
            7 => Value::Bool(self.u8()? != 0),
            8 => Value::Str(self.string()?),
            9 => {
                if depth > 2 {
                    return Err(self.err("nested arrays too deep"));
                }
                let ety = self.u32()?;
                let n = self.len("array")?;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    v.push(self.value(ety, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(self.u64()? as i64),
            12 => Value::F64(f64::from_bits(self.u64()?)),
            t => return Err(self.err(format!("unknown metadata value type {t}"))),
        })
    }
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<GgufFile> {
        let f = std::fs::File::open(path).map_err(|e| LmError::io(path, e))?;
        // SAFETY: the file is opened read-only; we never hand out references
        // that outlive the map, and a concurrent truncation is outside our model.
        let mmap = unsafe { Mmap::map(&f) }.map_err(|e| LmError::io(path, e))?;
        let mut c = Cursor {
            b: &mmap,
            pos: 0,
            path,
        };
        if c.take(4).ok() != Some(b"GGUF".as_slice()) {
            return Err(c.err("bad magic (expected `GGUF`)"));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(c.err(format!(
                "unsupported GGUF version {version} (supported: 2, 3)"
            )));
        }
        let n_tensors = c.len("tensor count")?;
        let n_kv = c.len("metadata count")?;
        let mut metadata = HashMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let v = c.value(ty, 0)?;
            metadata.insert(key, v);
        }
        let mut tensors = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let nd = c.u32()? as usize;
            if nd > 4 {
                return Err(c.err(format!("tensor `{name}` has {nd} dims")));
            }
            let mut dims = Vec::with_capacity(nd);
            for _ in 0..nd {
                let n = c.u64()?;
                if n > 1 << 40 {
                    return Err(c.err(format!("tensor `{name}`: implausible dimension {n}")));
                }
                dims.push(n as usize);
            }
            dims.reverse();
            let type_id = c.u32()?;
            let offset = c.u64()?;
            tensors.push(TensorInfo {
                name,
                shape: dims,
                type_id,
                offset,
            });
        }
        let align = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32) as usize;
        if align == 0 {
            return Err(c.err("general.alignment is 0"));
        }
        let data_start = c.pos.div_ceil(align) * align;
        let file = GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data_start,
            mmap,
        };
        // Validate every tensor's extent up front, so a truncated file is
        // reported at open and not half-way through loading.
        for t in &file.tensors {
            file.tensor_bytes(t)?;
        }
        Ok(file)
    }

    fn err(&self, msg: impl Into<String>) -> LmError {
        LmError::Gguf {
            path: self.path.clone(),
            msg: msg.into(),
        }
    }

    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn meta_u64(&self, key: &str) -> Result<u64> {
        self.meta(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| self.err(format!("metadata `{key}` missing or not an integer")))
    }

    pub fn meta_f64(&self, key: &str) -> Result<f64> {
        self.meta(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| self.err(format!("metadata `{key}` missing or not a number")))
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn tensor_bytes(&self, t: &TensorInfo) -> Result<(GgmlType, &[u8])> {
        let ty = GgmlType::from_id(t.type_id).ok_or_else(|| LmError::UnsupportedDtype {
            path: self.path.clone(),
            name: t.name.clone(),
            dtype: format!("ggml type {}", t.type_id),
            supported: SUPPORTED,
        })?;
        let n = t
            .shape
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .ok_or_else(|| self.err(format!("tensor `{}`: element count overflows", t.name)))?;
        let (be, bb) = ty.block();
        if n % be != 0 {
            return Err(self.err(format!(
                "tensor `{}`: {n} elements is not a whole number of blocks",
                t.name
            )));
        }
        let len = n / be * bb;
        let start = (self.data_start as u64).saturating_add(t.offset);
        let end = start.saturating_add(len as u64);
        if end > self.mmap.len() as u64 {
            return Err(self.err(format!(
                "truncated: tensor `{}` needs bytes {start}..{end} but the file has {}",
                t.name,
                self.mmap.len()
            )));
        }
        Ok((ty, &self.mmap[start as usize..end as usize]))
    }

    /// Dequantizes tensor `name` to f32, checking its row-major shape.
    pub fn tensor_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.info(name).ok_or_else(|| LmError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        if t.shape != shape {
            return Err(LmError::Shape {
                path: self.path.clone(),
                name: name.to_string(),
                got: t.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        let (ty, bytes) = self.tensor_bytes(t)?;
        Ok(dequantize(ty, bytes, shape.iter().product()))
    }

    /// The raw bytes of the file (for hashing).
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `n` elements of type `ty` from `bytes` (ggml reference order).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let (be, bb) = ty.block();
    let mut out = vec![0.0f32; n];
    out.par_chunks_mut(be * 256)
        .zip(bytes.par_chunks(bb * 256))
        .for_each(|(o, b)| {
            for (ob, bl) in o.chunks_exact_mut(be).zip(b.chunks_exact(bb)) {
                dequant_block(ty, bl, ob);
            }
        });
    out
}

fn dequant_block(ty: GgmlType, b: &[u8], o: &mut [f32]) {
    match ty {
        GgmlType::F32 => o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => o[0] = f16_at(b, 0),
        GgmlType::BF16 => o[0] = half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::Q4_0 => {
            let d = f16_at(b, 0);
            for j in 0..16 {
                let q = b[2 + j];
                o[j] = ((q & 0xF) as i32 - 8) as f32 * d;
                o[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
            }
        }
        GgmlType::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for j in 0..16 {
                let q = b[4 + j];
                o[j] = (q & 0xF) as f32 * d + m;
                o[j + 16] = (q >> 4) as f32 * d + m;
            }
        }
        GgmlType::Q5_0 => {
            let d = f16_at(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            for j in 0..16 {
                let xh0 = ((qh >> j) << 4) & 0x10;
                let xh1 = (qh >> (j + 12)) & 0x10;
                let q = b[6 + j] as u32;
                o[j] = (((q & 0xF) | xh0) as i32 - 16) as f32 * d;
                o[j + 16] = (((q >> 4) | xh1) as i32 - 16) as f32 * d;
            }
        }
        GgmlType::Q5_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            for j in 0..16 {
                let xh0 = ((qh >> j) << 4) & 0x10;
                let xh1 = (qh >> (j + 12)) & 0x10;
                let q = b[8 + j] as u32;
                o[j] = ((q & 0xF) | xh0) as f32 * d + m;
                o[j + 16] = ((q >> 4) | xh1) as f32 * d + m;
            }
        }
        GgmlType::Q8_0 => {
            let d = f16_at(b, 0);
            for j in 0..32 {
                o[j] = (b[2 + j] as i8) as f32 * d;
            }
        }
        GgmlType::Q4K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let scales = &b[4..16];
            let qs = &b[16..144];
            let mut is = 0;
            for (chunk, q) in qs.chunks_exact(32).enumerate() {
                let (sc1, m1) = scale_min_k4(is, scales);
                let (sc2, m2) = scale_min_k4(is + 1, scales);
                let (d1, mm1) = (d * sc1 as f32, dmin * m1 as f32);
                let (d2, mm2) = (d * sc2 as f32, dmin * m2 as f32);
                let base = chunk * 64;
                for l in 0..32 {
                    o[base + l] = d1 * (q[l] & 0xF) as f32 - mm1;
                    o[base + 32 + l] = d2 * (q[l] >> 4) as f32 - mm2;
                }
                is += 2;
            }
        }
        GgmlType::Q6K => {
            let ql = &b[0..128];
            let qh = &b[128..192];
            let sc = &b[192..208];
            let d = f16_at(b, 208);
            for half in 0..2 {
                let (ql, qh, sc) = (&ql[half * 64..], &qh[half * 32..], &sc[half * 8..]);
                let y = &mut o[half * 128..];
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                    y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                    y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                    y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                }
            }
        }
    }
}

fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_block_by_hand() {
        let mut b = vec![0u8; 20];
        b[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        for j in 0..16 {
            b[4 + j] = (j as u8) | (((15 - j) as u8) << 4);
        }
        let o = dequantize(GgmlType::Q4_1, &b, 32);
        for j in 0..16 {
            assert_eq!(o[j], j as f32 * 0.5 - 1.0);
            assert_eq!(o[j + 16], (15 - j) as f32 * 0.5 - 1.0);
        }
    }

    #[test]
    fn q8_0_block_by_hand() {
        let mut b = vec![0u8; 34];
        b[0..2].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
        for j in 0..32 {
            b[2 + j] = (j as i8 - 16) as u8;
        }
        let o = dequantize(GgmlType::Q8_0, &b, 32);
        for (j, v) in o.iter().enumerate() {
            assert_eq!(*v, (j as f32 - 16.0) * 0.25);
        }
    }

    /// A minimal GGUF with one 1-D tensor of `type_id` and `data_len` bytes.
    fn tiny_gguf(type_id: u32, n: u64, data_len: usize) -> Vec<u8> {
        let mut v = b"GGUF".to_vec();
        v.extend(3u32.to_le_bytes());
        v.extend(1u64.to_le_bytes()); // tensors
        v.extend(0u64.to_le_bytes()); // metadata
        v.extend(1u64.to_le_bytes());
        v.extend(b"x");
        v.extend(1u32.to_le_bytes());
        v.extend(n.to_le_bytes());
        v.extend(type_id.to_le_bytes());
        v.extend(0u64.to_le_bytes());
        while !v.len().is_multiple_of(32) {
            v.push(0);
        }
        v.extend(vec![0u8; data_len]);
        v
    }

    #[test]
    fn unsupported_quantization_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q2k.gguf");
        std::fs::write(&p, tiny_gguf(10, 256, 84)).unwrap();
        let e = GgufFile::open(&p).err().unwrap().to_string();
        assert!(
            e.contains("q2k.gguf")
                && e.contains("`x`")
                && e.contains("ggml type 10")
                && e.contains("Q4_1"),
            "{e}"
        );
        // The same layout with a supported type loads, and a cut data
        // section is reported as truncation of that tensor.
        std::fs::write(&p, tiny_gguf(8, 64, 68)).unwrap();
        let g = GgufFile::open(&p).unwrap();
        assert_eq!(g.tensor_f32("x", &[64]).unwrap(), vec![0.0; 64]);
        let e = g.tensor_f32("x", &[8, 8]).unwrap_err().to_string();
        assert!(e.contains("[64]") && e.contains("[8, 8]"), "{e}");
        std::fs::write(&p, tiny_gguf(8, 64, 40)).unwrap();
        let e = GgufFile::open(&p).err().unwrap().to_string();
        assert!(e.contains("truncated") && e.contains("`x`"), "{e}");
    }

    #[test]
    fn bad_magic_and_truncation_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.gguf");
        std::fs::write(&p, b"NOPE0000").unwrap();
        let e = GgufFile::open(&p).err().unwrap().to_string();
        assert!(e.contains("x.gguf") && e.contains("magic"), "{e}");
        let mut v = b"GGUF".to_vec();
        v.extend(3u32.to_le_bytes());
        v.extend(1u64.to_le_bytes());
        std::fs::write(&p, &v).unwrap();
        let e = GgufFile::open(&p).err().unwrap().to_string();
        assert!(e.contains("x.gguf") && e.contains("truncated"), "{e}");
    }
}
