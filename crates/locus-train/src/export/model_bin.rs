//! CTranslate2's `model.bin`: named little-endian arrays, written as its Python converter
//! writes them (`ctranslate2/specs/model_spec.py`, `ModelSpec._serialize`, binary version 6),
//! with its two optimisations: duplicate arrays become aliases (`_alias_variables`) and, on
//! request, weights are quantized to int8 with one float scale per row (`_quantize`).
//!
//! Byte layout (all integers little-endian; a *string* is a `u16` length counting a final NUL,
//! the UTF-8 bytes, then the NUL):
//!
//! ```text
//! u32 binary version (6) | string spec name | u32 spec revision
//! u32 variable count, then per variable, sorted by name:
//!     string name | u8 rank | u32 × rank dims | u8 type id | u32 byte count | the bytes
//! u32 alias count, then per alias, sorted by name: string alias | string target name
//! ```
//!
//! Type ids follow CTranslate2's `DataType`: 0 float32, 1 int8, 2 int16, 3 int32. Attributes are
//! scalars (rank 0): flags are int8 0/1, counts int16 or int32, rates float32.

use std::collections::BTreeMap;

/// The binary version this module writes (`CURRENT_BINARY_VERSION`).
pub const BINARY_VERSION: u32 = 6;

/// The elements of an array, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// float32 (type id 0).
    F32(Vec<f32>),
    /// int8 (type id 1).
    I8(Vec<i8>),
    /// int16 (type id 2).
    I16(Vec<i16>),
    /// int32 (type id 3).
    I32(Vec<i32>),
}

impl Data {
    fn type_id(&self) -> u8 {
        match self {
            Self::F32(_) => 0,
            Self::I8(_) => 1,
            Self::I16(_) => 2,
            Self::I32(_) => 3,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::I32(v) => v.len(),
        }
    }

    fn write_le(&self, out: &mut Vec<u8>) {
        match self {
            Self::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Self::I8(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Self::I16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Self::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }

    fn byte_len(&self) -> usize {
        match self {
            Self::F32(v) => 4 * v.len(),
            Self::I8(v) => v.len(),
            Self::I16(v) => 2 * v.len(),
            Self::I32(v) => 4 * v.len(),
        }
    }

    /// numpy's `array_equal` for arrays of the same type: element-wise `==` (so `-0.0 == 0.0`
    /// and a NaN equals nothing).
    fn equal(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::F32(a), Self::F32(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y),
            (Self::I8(a), Self::I8(b)) => a == b,
            (Self::I16(a), Self::I16(b)) => a == b,
            (Self::I32(a), Self::I32(b)) => a == b,
            _ => false,
        }
    }
}

/// One variable: a shape (empty for a scalar attribute) and its elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The elements.
    pub data: Data,
}

impl Array {
    /// A float32 array; `data.len()` must be the product of `shape`.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data: Data::F32(data) }
    }

    /// A boolean attribute (int8 0 or 1).
    pub fn flag(value: bool) -> Self {
        Self { shape: Vec::new(), data: Data::I8(vec![i8::from(value)]) }
    }

    /// An int8 attribute (enumerations such as the activation).
    pub fn int8(value: i8) -> Self {
        Self { shape: Vec::new(), data: Data::I8(vec![value]) }
    }

    /// An int16 attribute (head counts, alignment settings).
    pub fn int16(value: i16) -> Self {
        Self { shape: Vec::new(), data: Data::I16(vec![value]) }
    }

    /// An int32 attribute (distances, dimensions).
    pub fn int32(value: i32) -> Self {
        Self { shape: Vec::new(), data: Data::I32(vec![value]) }
    }

    /// A float32 attribute.
    pub fn scalar_f32(value: f32) -> Self {
        Self { shape: Vec::new(), data: Data::F32(vec![value]) }
    }

    fn is_scalar(&self) -> bool {
        self.shape.is_empty()
    }

    fn equal(&self, other: &Self) -> bool {
        self.shape == other.shape && self.data.equal(&other.data)
    }
}

/// A CTranslate2 model's variables, ready to be written as `model.bin`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelBin {
    /// The specification's name, e.g. `TransformerSpec`.
    pub spec_name: String,
    /// The specification's revision (7 for `TransformerSpec` in CTranslate2 4.x).
    pub spec_revision: u32,
    variables: BTreeMap<String, Array>,
    aliases: BTreeMap<String, String>,
}

impl ModelBin {
    /// An empty model of the given specification.
    pub fn new(spec_name: &str, spec_revision: u32) -> Self {
        Self {
            spec_name: spec_name.to_string(),
            spec_revision,
            variables: BTreeMap::new(),
            aliases: BTreeMap::new(),
        }
    }

    /// Sets variable `name` (`scope/.../attribute`), replacing any earlier value.
    pub fn set(&mut self, name: impl Into<String>, array: Array) {
        self.variables.insert(name.into(), array);
    }

    /// The variable `name`, unless it is missing or an alias.
    pub fn get(&self, name: &str) -> Option<&Array> {
        self.variables.get(name)
    }

    /// The variables' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.variables.keys().map(String::as_str)
    }

    /// The aliases: alias name → name of the variable it stands for.
    pub fn aliases(&self) -> &BTreeMap<String, String> {
        &self.aliases
    }

    /// Replaces every non-scalar variable equal (same type, shape and elements) to one earlier
    /// in name order by an alias to the first of them, as `LayerSpec._alias_variables`: tied
    /// embeddings and repeated tables are stored once.
    pub fn alias_duplicates(&mut self) {
        let names: Vec<String> = self.variables.keys().cloned().collect();
        let mut aliases = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let value = &self.variables[name];
            if value.is_scalar() {
                continue;
            }
            if let Some(first) = names[..i].iter().find(|other| self.variables[*other].equal(value)) {
                aliases.push((name.clone(), first.clone()));
            }
        }
        for (alias, target) in aliases {
            self.variables.remove(&alias);
            self.aliases.insert(alias, target);
        }
    }

    /// Quantizes every float32 variable whose last name component is `weight` (the linear and
    /// embedding weights: those whose spec has a `weight_scale`) to int8, one scale per row,
    /// and adds `<scope>/weight_scale`, exactly as CTranslate2's `int8` quantization:
    ///
    /// `amax = max |row|` (127 where 0, and at least `127 / f32::MAX`), `scale = 127 / amax`,
    /// `q = round_half_even(row × scale)` as int8; all in float32.
    pub fn quantize_int8(&mut self) {
        let names: Vec<String> = self
            .variables
            .iter()
            .filter(|(name, array)| {
                name.rsplit('/').next() == Some("weight")
                    && !array.is_scalar()
                    && matches!(array.data, Data::F32(_))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            let Some(array) = self.variables.get(&name) else { continue };
            let Data::F32(values) = &array.data else { continue };
            let rows = array.shape[0];
            let cols = values.len().checked_div(rows).unwrap_or(0);
            let mut quantized = Vec::with_capacity(values.len());
            let mut scales = Vec::with_capacity(rows);
            for row in values.chunks(cols.max(1)).take(rows) {
                let mut amax = row.iter().fold(0f32, |m, x| m.max(x.abs()));
                if amax == 0.0 {
                    amax = 127.0;
                }
                amax = amax.max(127.0 / f32::MAX);
                let scale = 127.0 / amax;
                quantized.extend(row.iter().map(|x| (x * scale).round_ties_even() as i8));
                scales.push(scale);
            }
            let shape = array.shape.clone();
            self.variables.insert(name.clone(), Array { shape, data: Data::I8(quantized) });
            let scope = name.strip_suffix("weight").unwrap_or(&name);
            self.variables.insert(format!("{scope}weight_scale"), Array::f32(vec![rows], scales));
        }
    }

    /// The `model.bin` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let size: usize = self.variables.values().map(|a| a.data.byte_len() + 64).sum();
        let mut out = Vec::with_capacity(size + 1024);
        out.extend_from_slice(&BINARY_VERSION.to_le_bytes());
        write_string(&mut out, &self.spec_name);
        out.extend_from_slice(&self.spec_revision.to_le_bytes());
        out.extend_from_slice(&(self.variables.len() as u32).to_le_bytes());
        for (name, array) in &self.variables {
            write_string(&mut out, name);
            out.push(array.shape.len() as u8);
            for &dim in &array.shape {
                out.extend_from_slice(&(dim as u32).to_le_bytes());
            }
            out.push(array.data.type_id());
            out.extend_from_slice(&(array.data.byte_len() as u32).to_le_bytes());
            debug_assert_eq!(array.data.len(), array.shape.iter().product::<usize>());
            array.data.write_le(&mut out);
        }
        out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
        for (alias, target) in &self.aliases {
            write_string(&mut out, alias);
            write_string(&mut out, target);
        }
        out
    }
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&((text.len() + 1) as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_one_variable_and_one_alias() {
        let mut bin = ModelBin::new("S", 2);
        bin.set("b", Array::f32(vec![2], vec![1.0, -2.0]));
        bin.set("a", Array::f32(vec![2], vec![1.0, -2.0]));
        bin.set("c", Array::int16(3));
        bin.alias_duplicates();
        let bytes = bin.to_bytes();
        let mut expected = vec![6, 0, 0, 0, 2, 0, b'S', 0, 2, 0, 0, 0, 2, 0, 0, 0];
        expected.extend([2, 0, b'a', 0, 1, 2, 0, 0, 0, 0, 8, 0, 0, 0]);
        expected.extend(1f32.to_le_bytes());
        expected.extend((-2f32).to_le_bytes());
        expected.extend([2, 0, b'c', 0, 0, 2, 2, 0, 0, 0, 3, 0]);
        expected.extend([1, 0, 0, 0, 2, 0, b'b', 0, 2, 0, b'a', 0]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn scalars_are_never_aliased_and_aliases_point_at_the_first_copy() {
        let mut bin = ModelBin::new("S", 1);
        for name in ["x/c", "x/a", "x/b"] {
            bin.set(name, Array::f32(vec![1], vec![0.5]));
        }
        bin.set("f1", Array::flag(true));
        bin.set("f2", Array::flag(true));
        bin.alias_duplicates();
        assert_eq!(bin.names().collect::<Vec<_>>(), ["f1", "f2", "x/a"]);
        assert_eq!(bin.aliases()["x/b"], "x/a");
        assert_eq!(bin.aliases()["x/c"], "x/a");
    }

    #[test]
    fn int8_rows_scale_to_127_and_round_half_to_even() {
        let mut bin = ModelBin::new("S", 1);
        // Row 0: amax 2, scale 63.5: 1 -> 63.5 -> 64 (even), -2 -> -127. Row 1: zeros, scale 1.
        bin.set("l/weight", Array::f32(vec![2, 2], vec![1.0, -2.0, 0.0, 0.0]));
        bin.set("l/bias", Array::f32(vec![2], vec![1.0, 2.0]));
        bin.quantize_int8();
        assert_eq!(bin.get("l/weight").unwrap().data, Data::I8(vec![64, -127, 0, 0]));
        assert_eq!(bin.get("l/weight_scale").unwrap().data, Data::F32(vec![63.5, 1.0]));
        assert_eq!(bin.get("l/bias").unwrap().data, Data::F32(vec![1.0, 2.0]));
    }
}
