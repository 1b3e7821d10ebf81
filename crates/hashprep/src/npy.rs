//! The NumPy `.npy` container, as far as hashprep exchanges arrays through it: a header naming
//! the element type (`descr`), the order and the shape, then the raw little-endian values.

/// The first bytes of every `.npy` file.
pub(crate) const MAGIC: &[u8] = b"\x93NUMPY";

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NpyHeader {
    /// Element type, e.g. `<f4`, `<u2`.
    pub descr: String,
    /// Column-major data.
    pub fortran_order: bool,
    /// Dimensions.
    pub shape: Vec<usize>,
}

/// The header of a C-order array of `descr` with `shape` (version 1.0, padded to 64 bytes as
/// numpy writes it). The values follow it directly.
pub(crate) fn encode_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let shape_text = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while !(MAGIC.len() + 4 + dict.len() + 1).is_multiple_of(64) {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = MAGIC.to_vec();
    bytes.extend([1, 0]);
    bytes.extend((dict.len() as u16).to_le_bytes());
    bytes.extend(dict.as_bytes());
    bytes
}

/// Splits a `.npy` file into its header and its data bytes.
///
/// # Errors
/// A message saying what is malformed.
pub(crate) fn decode(bytes: &[u8]) -> Result<(NpyHeader, &[u8]), String> {
    if !bytes.starts_with(MAGIC) || bytes.len() < 10 {
        return Err("not a .npy file".into());
    }
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let dict = bytes
        .get(start..start + len)
        .ok_or("truncated .npy header")?;
    let dict = std::str::from_utf8(dict).map_err(|_| "the .npy header is not text")?;
    let field = |name: &str| -> Option<&str> {
        let at = dict.find(&format!("'{name}'"))?;
        Some(
            dict[at + name.len() + 2..]
                .trim_start()
                .trim_start_matches(':')
                .trim_start(),
        )
    };
    let descr = field("descr")
        .and_then(|s| s.split('\'').nth(1))
        .ok_or("no descr in the .npy header")?;
    let shape_text = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or("no shape in the .npy header")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape ({shape_text})")))
        .collect::<Result<Vec<usize>, String>>()?;
    let header = NpyHeader {
        descr: descr.to_owned(),
        fortran_order: field("fortran_order").is_some_and(|s| s.starts_with("True")),
        shape,
    };
    Ok((header, &bytes[start + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_is_aligned() {
        for shape in [vec![7], vec![3, 4], vec![270_000, 16]] {
            let mut bytes = encode_header("<u2", &shape);
            assert_eq!(bytes.len() % 64, 0);
            bytes.extend([1, 2, 3]);
            let (header, data) = decode(&bytes).unwrap();
            assert_eq!(
                header,
                NpyHeader {
                    descr: "<u2".into(),
                    fortran_order: false,
                    shape
                }
            );
            assert_eq!(data, &[1, 2, 3]);
        }
        assert!(decode(b"\x93NUMPY\x01\x00\xff\x00{").is_err());
    }
}
