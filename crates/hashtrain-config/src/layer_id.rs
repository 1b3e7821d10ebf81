//! Naming a layer of the model: its stack (a sequence-to-sequence model's encoder, or the
//! decoder, the only stack of a decoder-only model) and its number in that stack, from 1.

use serde::{Deserialize, Serialize};

/// A stack of layers (`model.sparse[].stack`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    /// A sequence-to-sequence model's encoder (over the context).
    Encoder,
    /// The decoder: every layer of a decoder-only model.
    #[default]
    Decoder,
}

impl Stack {
    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Encoder => "encoder",
            Stack::Decoder => "decoder",
        }
    }
}

/// One layer: written `3` (decoder layer 3) or `"encoder-2"` where it is a key or a value of
/// the records (`metrics.jsonl`'s loads, a checkpoint's open window), so a decoder-only model's
/// records read as they always did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerId {
    /// Its stack.
    pub stack: Stack,
    /// Its number in the stack, from 1.
    pub at: usize,
}

impl LayerId {
    /// Decoder layer `at`.
    pub fn decoder(at: usize) -> Self {
        Self {
            stack: Stack::Decoder,
            at,
        }
    }

    /// Encoder layer `at`.
    pub fn encoder(at: usize) -> Self {
        Self {
            stack: Stack::Encoder,
            at,
        }
    }

    /// The prefix of its weights' names: `layers.N.` or `encoder.layers.N.`.
    pub fn weight_prefix(self) -> String {
        match self.stack {
            Stack::Decoder => format!("layers.{}.", self.at),
            Stack::Encoder => format!("encoder.layers.{}.", self.at),
        }
    }
}

impl std::fmt::Display for LayerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stack {
            Stack::Decoder => write!(f, "layer {}", self.at),
            Stack::Encoder => write!(f, "encoder layer {}", self.at),
        }
    }
}

impl Serialize for LayerId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.stack {
            Stack::Decoder => serializer.serialize_u64(self.at as u64),
            Stack::Encoder => serializer.serialize_str(&format!("encoder-{}", self.at)),
        }
    }
}

impl<'de> Deserialize<'de> for LayerId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = LayerId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a layer number, or \"encoder-N\"")
            }
            fn visit_u64<E: serde::de::Error>(self, at: u64) -> Result<LayerId, E> {
                usize::try_from(at)
                    .map(LayerId::decoder)
                    .map_err(|_| E::custom("layer number out of range"))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<LayerId, E> {
                let (stack, number) = match text.strip_prefix("encoder-") {
                    Some(number) => (Stack::Encoder, number),
                    None => (Stack::Decoder, text),
                };
                let at = number
                    .parse()
                    .map_err(|_| E::custom(format!("`{text}` is not a layer")))?;
                Ok(LayerId { stack, at })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn decoder_layers_are_written_as_numbers_and_encoder_layers_by_name() {
        let map = BTreeMap::from([(LayerId::decoder(3), 1), (LayerId::encoder(2), 2)]);
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(json, r#"{"encoder-2":2,"3":1}"#);
        assert_eq!(
            serde_json::from_str::<BTreeMap<LayerId, i32>>(&json).unwrap(),
            map
        );
        let values = serde_json::to_string(&[LayerId::decoder(7), LayerId::encoder(1)]).unwrap();
        assert_eq!(values, r#"[7,"encoder-1"]"#);
        assert_eq!(
            serde_json::from_str::<Vec<LayerId>>(&values).unwrap(),
            [LayerId::decoder(7), LayerId::encoder(1)]
        );
        assert!(serde_json::from_str::<LayerId>(r#""encoder-x""#).is_err());
        assert_eq!(LayerId::encoder(2).to_string(), "encoder layer 2");
    }
}
