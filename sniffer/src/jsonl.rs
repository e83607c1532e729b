//! `--json` output: every value the sniffer reports ([`crate::findings::Record`],
//! the summary rows and totals of [`crate::report`], the guard's verdicts in
//! [`crate::guard`], a followed stream's data) as one line of JSON.
//!
//! The values derive `serde::Serialize`; nothing builds JSON by hand, so a
//! field cannot be shown in the text output and forgotten in the JSON.
//!
//! Every object's keys come out sorted, because the sniffer's JSON always
//! had them so (its objects were `serde_json::Value` maps, which are
//! sorted), and a script or a saved run compared line by line must not see
//! the order change. Field order in the Rust types is then free to follow
//! what reads best. The lines used to go through a `Value` to get that; a
//! capture with a million findings paid for a map of allocations per line
//! (half the time of `read --json` on real traffic). [`Sorted`] writes the
//! same bytes directly: each object's members are written as they come,
//! then put in key order, and every scalar is written by `serde_json`
//! itself, so strings and numbers are escaped and formatted exactly as
//! before (a unit test compares the two on every kind of finding).

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::Value;

/// `value` as one line of JSON, its keys in sorted order.
pub fn line(value: &impl Serialize) -> String {
    let mut out = Vec::with_capacity(256);
    match value.serialize(Sorted { out: &mut out }) {
        Ok(()) => String::from_utf8(out)
            .unwrap_or_else(|e| Value::String(format!("unserializable: {e}")).to_string()),
        // Cannot happen for the sniffer's types (every map key is a string
        // and no `Serialize` of theirs fails). Should a later type fail, its
        // line is still one line of JSON, a string saying why, not a panic
        // in the middle of a capture.
        Err(e) => Value::String(format!("unserializable: {e}")).to_string(),
    }
}

/// A serializer writing JSON with sorted object keys into `out`.
pub struct Sorted<'a> {
    out: &'a mut Vec<u8>,
}

type Error = serde_json::Error;

impl Sorted<'_> {
    /// A scalar, written by serde_json.
    fn scalar<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        serde_json::to_writer(&mut *self.out, v)
    }
}

/// An object being written: its members as (key, JSON of the value).
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    members: Vec<(String, Vec<u8>)>,
    /// A map's key, waiting for its value.
    key: Option<String>,
    /// For an enum variant: `{"Variant": ...}` around the object.
    variant: Option<&'static str>,
}

impl Object<'_> {
    fn value<T: Serialize + ?Sized>(&mut self, key: String, v: &T) -> Result<(), Error> {
        let mut buf = Vec::with_capacity(32);
        v.serialize(Sorted { out: &mut buf })?;
        self.members.push((key, buf));
        Ok(())
    }

    fn finish(mut self) -> Result<(), Error> {
        // Sorted as a BTreeMap<String, _> sorts (a stable sort; a key given
        // twice is not something a derive writes).
        self.members.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(v) = self.variant {
            self.out.push(b'{');
            serde_json::to_writer(&mut *self.out, v)?;
            self.out.push(b':');
        }
        self.out.push(b'{');
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            serde_json::to_writer(&mut *self.out, k)?;
            self.out.push(b':');
            self.out.extend_from_slice(v);
        }
        self.out.push(b'}');
        if self.variant.is_some() {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// An array being written.
pub struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// For a tuple variant: `{"Variant": [...]}`.
    variant: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        v.serialize(Sorted { out: self.out })
    }

    fn finish(self) -> Result<(), Error> {
        self.out.push(b']');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for Sorted<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        // As a Value holds it: widened to f64.
        self.scalar(&f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        let mut o = Object {
            out: self.out,
            members: Vec::new(),
            key: None,
            variant: None,
        };
        o.value(variant.to_string(), v)?;
        o.finish()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, Error> {
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
            first: true,
            variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Array<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Array<'a>, Error> {
        self.out.push(b'{');
        serde_json::to_writer(&mut *self.out, variant)?;
        self.out.extend_from_slice(b":[");
        Ok(Array {
            out: self.out,
            first: true,
            variant: true,
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Error> {
        Ok(Object {
            out: self.out,
            members: Vec::with_capacity(len.unwrap_or(8)),
            key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Object<'a>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, Error> {
        let mut o = self.serialize_map(Some(len))?;
        o.variant = Some(variant);
        Ok(o)
    }
}

impl ser::SerializeSeq for Array<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTuple for Array<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Array<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Array<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key.serialize(KeyName)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| <Error as ser::Error>::custom("a map value without its key"))?;
        self.value(key, v)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.value(key.to_string(), v)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.value(key.to_string(), v)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// A map key: a string (or what JSON writes as one), as a `Value` map
/// would take it.
struct KeyName;

fn not_a_key() -> Error {
    <Error as ser::Error>::custom("a map key that is not a string")
}

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = Impossible<String, Error>;
    type SerializeTuple = Impossible<String, Error>;
    type SerializeTupleStruct = Impossible<String, Error>;
    type SerializeTupleVariant = Impossible<String, Error>;
    type SerializeMap = Impossible<String, Error>;
    type SerializeStruct = Impossible<String, Error>;
    type SerializeStructVariant = Impossible<String, Error>;

    fn serialize_str(self, v: &str) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_char(self, v: char) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
    ) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<String, Error> {
        v.serialize(self)
    }
    fn serialize_bool(self, v: bool) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _: f32) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_f64(self, _: f64) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_none(self) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_unit(self) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(not_a_key())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(not_a_key())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(not_a_key())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(not_a_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The bytes a `Value` wrote, which the lines always were.
    fn via_value(v: &impl Serialize) -> String {
        serde_json::to_value(v).unwrap().to_string()
    }

    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "kebab-case")]
    enum Kind {
        Unit,
        Fields {
            z: f64,
            a: Vec<i64>,
            m: Option<String>,
        },
        Nested {
            inner: Inner,
            list: Vec<Inner>,
        },
    }

    #[derive(Serialize)]
    struct Inner {
        zeta: u64,
        alpha: &'static str,
        floats: Vec<f64>,
    }

    #[derive(Serialize)]
    struct Outer<'a> {
        zz: u8,
        #[serde(flatten)]
        kind: &'a Kind,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        #[serde(flatten)]
        extra: HashMap<String, u64>,
        text: &'static str,
    }

    #[test]
    fn the_same_bytes_as_a_value_map() {
        let inner = || Inner {
            zeta: u64::MAX,
            alpha: "a\"b\\c\n\u{1b}\u{202e}é",
            floats: vec![0.0, 1.5, 1e-7, 1e300, -0.0, f64::NAN, 0.1 + 0.2],
        };
        let kinds = [
            Kind::Unit,
            Kind::Fields {
                z: 1700000000.25,
                a: vec![-1, 0, i64::MAX],
                m: None,
            },
            Kind::Nested {
                inner: inner(),
                list: vec![inner(), inner()],
            },
        ];
        for k in &kinds {
            let o = Outer {
                zz: 7,
                kind: k,
                skipped: None,
                extra: [("b".to_string(), 2), ("a_b".to_string(), 1)].into(),
                text: "</script>",
            };
            assert_eq!(line(&o), via_value(&o));
        }
        assert_eq!(line(&vec![(1, "x")]), via_value(&vec![(1, "x")]));
    }
}
