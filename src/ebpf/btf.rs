//! A small copy of the kernel's BTF for the loader (Documentation/bpf/btf.rst: the format;
//! /sys/kernel/btf/vmlinux: the kernel's own).
//!
//! Why: aya parses a BTF whole into memory, and the kernel's (5 MB, some 125,000 types) made
//! the exporter's peak 38 MiB at the start, twice what it holds after (docs/performance.md).
//! The loader needs far less of it: the structs and fields the object's CO-RE relocations
//! name, with the types those fields are, to relocate by; and the kernel's ids of the
//! tracepoints' typedefs and the iterator's function, which it passes to the kernel as they
//! are. The copy keeps each of those at its kernel id, every other id below the last one kept
//! becomes an empty placeholder (so that ids stay the kernel's), and nothing after it is
//! written. The kernel's BTF is read a chunk at a time and never held whole.

use std::collections::{HashMap, HashSet};
use std::io;

/// BTF kinds (include/uapi/linux/btf.h).
pub mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
/// What is read of the kernel's BTF at once.
const CHUNK: usize = 64 * 1024;

/// Where the bytes of a BTF come from: a file read at offsets, or bytes in memory.
pub trait Source {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl Source for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl Source for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let at = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let bytes = at
            .checked_add(buf.len())
            .and_then(|end| self.get(at..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// What the object reads of the kernel's types: each struct or union it names, with the
/// fields it names of it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub fields: HashMap<String, HashSet<String>>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

struct Header {
    type_off: u64,
    type_len: u64,
    str_off: u64,
    str_len: u64,
}

fn header(bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() < HEADER_LEN {
        return Err("BTF shorter than its header".into());
    }
    let magic = u16::from_ne_bytes([bytes[0], bytes[1]]);
    if magic != MAGIC {
        return Err(format!(
            "not BTF of this machine's byte order (magic {magic:#x})"
        ));
    }
    let hdr_len = u64::from(u32_at(bytes, 4).unwrap_or(0));
    let field = |at| u64::from(u32_at(bytes, at).unwrap_or(0));
    Ok(Header {
        type_off: hdr_len + field(8),
        type_len: field(12),
        str_off: hdr_len + field(16),
        str_len: field(20),
    })
}

/// The bytes that follow a type's 12-byte head, by its kind and vlen.
fn tail_len(kind: u32, vlen: usize) -> Result<usize, String> {
    Ok(match kind {
        kind::INT | kind::VAR | kind::DECL_TAG => 4,
        kind::ARRAY => 12,
        kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => 12 * vlen,
        kind::ENUM | kind::FUNC_PROTO => 8 * vlen,
        kind::PTR
        | kind::FWD
        | kind::TYPEDEF
        | kind::VOLATILE
        | kind::CONST
        | kind::RESTRICT
        | kind::FUNC
        | kind::FLOAT
        | kind::TYPE_TAG => 0,
        other => return Err(format!("BTF kind {other} unknown to this exporter")),
    })
}

/// The bytes of a whole type (its 12-byte head and its tail), from the head's `info` word.
fn type_len(info: u32) -> Result<usize, String> {
    Ok(12 + tail_len((info >> 24) & 0x1f, (info & 0xffff) as usize)?)
}

/// One type as read: its head's three words and the bytes after.
#[derive(Clone, Debug)]
struct Type {
    name_off: u32,
    info: u32,
    size_or_type: u32,
    tail: Vec<u8>,
}

impl Type {
    /// A type from its bytes, whole ([`type_len`] of them).
    fn parse(bytes: &[u8]) -> Type {
        Type {
            name_off: u32_at(bytes, 0).unwrap_or(0),
            info: u32_at(bytes, 4).unwrap_or(0),
            size_or_type: u32_at(bytes, 8).unwrap_or(0),
            tail: bytes.get(12..).unwrap_or_default().to_vec(),
        }
    }

    fn kind(&self) -> u32 {
        (self.info >> 24) & 0x1f
    }

    fn composite(&self) -> bool {
        matches!(self.kind(), kind::STRUCT | kind::UNION)
    }

    /// A struct's or union's members: (name offset, type, offset).
    fn members(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        self.tail.chunks_exact(12).map(|m| {
            (
                u32_at(m, 0).unwrap_or(0),
                u32_at(m, 4).unwrap_or(0),
                u32_at(m, 8).unwrap_or(0),
            )
        })
    }

    fn with_info(&self, vlen: usize, tail: Vec<u8>) -> Type {
        Type {
            info: (self.info & !0xffff) | (vlen as u32 & 0xffff),
            tail,
            ..self.clone()
        }
    }
}

/// Reads every type of a BTF in order, a chunk at a time, and calls `each` with its id (from
/// 1), its byte offset in the type section and the type.
fn for_each_type(
    source: &(impl Source + ?Sized),
    header: &Header,
    mut each: impl FnMut(u32, u32, &Type),
) -> Result<(), String> {
    let mut chunk = Vec::new();
    // Where `chunk` starts in the type section, and how far into it the next type is.
    let (mut base, mut at) = (0u64, 0usize);
    let mut id = 0u32;
    let read = |base: u64, len: usize, chunk: &mut Vec<u8>| -> Result<(), String> {
        chunk.resize(len, 0);
        source
            .read_exact_at(chunk, header.type_off + base)
            .map_err(|e| format!("cannot read the BTF's types: {e}"))
    };
    while base + (at as u64) < header.type_len {
        // The next type must be whole in the chunk; else the chunk is read again from it.
        let whole = match u32_at(&chunk, at + 4) {
            Some(info) => at + type_len(info)? <= chunk.len(),
            None => false,
        };
        if !whole {
            base += at as u64;
            at = 0;
            let left = header.type_len - base;
            let len = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK);
            read(base, len, &mut chunk)?;
            let n = type_len(u32_at(&chunk, 4).ok_or("BTF types cut short")?)?;
            if n > chunk.len() {
                if (n as u64) > left {
                    return Err("BTF types cut short".into());
                }
                read(base, n, &mut chunk)?;
            }
        }
        let n = type_len(u32_at(&chunk, at + 4).unwrap_or(0))?;
        id += 1;
        let ty = Type::parse(&chunk[at..at + n]);
        each(id, (base + at as u64) as u32, &ty);
        at += n;
    }
    Ok(())
}

/// The offset in the string section of each of `names` (BTF keeps one copy of a string).
fn string_offsets(
    source: &(impl Source + ?Sized),
    header: &Header,
    names: &HashSet<&str>,
) -> Result<HashMap<u32, String>, String> {
    let mut found = HashMap::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut base = 0u64;
    while base < header.str_len {
        let len = usize::try_from(header.str_len - base)
            .unwrap_or(usize::MAX)
            .min(CHUNK);
        chunk.resize(len, 0);
        source
            .read_exact_at(&mut chunk, header.str_off + base)
            .map_err(|e| format!("cannot read the BTF's strings: {e}"))?;
        // Only whole strings: the chunk ends at its last NUL (or the section's end).
        let whole = if base + len as u64 == header.str_len {
            len
        } else {
            chunk.iter().rposition(|&b| b == 0).map_or(0, |p| p + 1)
        };
        if whole == 0 {
            return Err("a BTF string longer than 64 KiB".into());
        }
        let mut start = 0;
        for piece in chunk[..whole].split(|&b| b == 0) {
            if let Ok(text) = std::str::from_utf8(piece)
                && names.contains(text)
            {
                found.insert((base + start as u64) as u32, text.to_owned());
            }
            start += piece.len() + 1;
        }
        base += whole as u64;
    }
    Ok(found)
}

/// What an object's own BTF (its `.BTF` section) names: each named struct or union with its
/// fields' names. The relocations the object makes are by these names.
pub fn wanted(object_btf: &[u8]) -> Result<Wanted, String> {
    let header = header(object_btf)?;
    let mut out = Wanted::default();
    let mut failed = None;
    for_each_type(object_btf, &header, |_, _, ty| {
        if !ty.composite() {
            return;
        }
        let Some(name) = read_string(object_btf, &header, ty.name_off)
            .ok()
            .filter(|n| !n.is_empty())
        else {
            return;
        };
        let fields = out.fields.entry(name.clone()).or_default();
        for (name_off, _, _) in ty.members() {
            match read_string(object_btf, &header, name_off) {
                Ok(field) if field.is_empty() => {}
                Ok(field) => {
                    fields.insert(field);
                }
                Err(_) => failed = Some(format!("a field of {name} has no name in the BTF")),
            }
        }
    })?;
    match failed {
        Some(why) => Err(why),
        None => Ok(out),
    }
}

/// The `.BTF` section of an ELF64 object of this machine's byte order.
pub fn elf_section<'a>(elf: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
    if elf.get(..4)? != b"\x7fELF" || *elf.get(4)? != 2 {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_ne_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_ne_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let (entsize, count, names) = (
        usize::from(u16_at(0x3a)?),
        usize::from(u16_at(0x3c)?),
        usize::from(u16_at(0x3e)?),
    );
    let section = |i: usize| -> Option<(u32, &'a [u8])> {
        let at = shoff.checked_add(i.checked_mul(entsize)?)?;
        let name = u32_at(elf, at)?;
        let off = usize::try_from(u64_at(at + 24)?).ok()?;
        let size = usize::try_from(u64_at(at + 32)?).ok()?;
        Some((name, elf.get(off..off.checked_add(size)?)?))
    };
    let (_, strtab) = section(names)?;
    (0..count).filter_map(section).find_map(|(name, bytes)| {
        let name = strtab.get(usize::try_from(name).ok()?..)?;
        let end = name.iter().position(|&b| b == 0)?;
        (&name[..end] == wanted.as_bytes()).then_some(bytes)
    })
}

/// The small copy of `kernel` (a BTF): the structs and unions `wanted` names, cut to the
/// fields it names (and their anonymous members, within which a named field may lie), the
/// types those fields are, and the types named `ids` (name and kind), each at its id in
/// `kernel`; empty placeholders for the other ids below the last one kept. A name of `ids`
/// the kernel lacks is left out: the program that needs it is refused as it would be.
pub fn prune(
    kernel: &(impl Source + ?Sized),
    wanted: &Wanted,
    ids: &[(&str, u32)],
) -> Result<Vec<u8>, String> {
    let mut head = [0u8; HEADER_LEN];
    kernel
        .read_exact_at(&mut head, 0)
        .map_err(|e| format!("cannot read the BTF's header: {e}"))?;
    let header = header(&head)?;
    let mut names: HashSet<&str> = wanted.fields.keys().map(String::as_str).collect();
    names.extend(wanted.fields.values().flatten().map(String::as_str));
    names.extend(ids.iter().map(|(n, _)| *n));
    let strings = string_offsets(kernel, &header, &names)?;
    let name = |off: u32| strings.get(&off).map(String::as_str);

    // One pass: where each type is, and which are kept at the start (the roots).
    let mut offsets: Vec<u32> = vec![0];
    let mut roots: Vec<(u32, Option<&str>)> = Vec::new();
    for_each_type(kernel, &header, |id, at, ty| {
        offsets.push(at);
        let Some(n) = name(ty.name_off) else {
            return;
        };
        if ty.composite() && wanted.fields.contains_key(n) {
            roots.push((id, Some(n)));
        } else if ids.iter().any(|&(want, k)| want == n && k == ty.kind()) {
            roots.push((id, None));
        }
    })?;
    // The closure: each kept type as it is written, with the fields each composite keeps.
    // A composite keeps the fields the object names of it (none where it names none of
    // them: a pointer to it relocates all the same); an anonymous member of a kept one is
    // searched for its parent's fields.
    let fields_of = |id: u32| -> Result<Option<HashSet<String>>, String> {
        if id == 0 {
            return Ok(None);
        }
        let ty = read_type(kernel, &header, &offsets, id)?;
        Ok(ty.composite().then(|| {
            name(ty.name_off)
                .and_then(|n| wanted.fields.get(n))
                .cloned()
                .unwrap_or_default()
        }))
    };
    let mut kept: HashMap<u32, Type> = HashMap::new();
    let mut work: Vec<(u32, Reach)> = Vec::new();
    for (id, n) in roots {
        work.push(match n {
            Some(n) => (id, Reach::Type(Some(wanted.fields[n].clone()))),
            None => (id, Reach::Id),
        });
    }
    let mut seen: HashSet<u32> = HashSet::new();
    while let Some((id, reach)) = work.pop() {
        if id == 0 || !seen.insert(id) {
            continue;
        }
        let ty = read_type(kernel, &header, &offsets, id)?;
        let fields = match reach {
            // Only its id is looked up: what it refers to is not followed.
            Reach::Id => {
                kept.insert(
                    id,
                    Type {
                        size_or_type: 0,
                        ..ty.with_info(0, Vec::new())
                    },
                );
                continue;
            }
            Reach::Type(fields) => fields,
        };
        let cut = match ty.kind() {
            kind::STRUCT | kind::UNION => {
                let fields = fields.unwrap_or_default();
                let mut tail = Vec::new();
                let mut vlen = 0;
                for (name_off, member_type, offset) in ty.members() {
                    let anonymous = name_off == 0;
                    let named = name(name_off).is_some_and(|n| fields.contains(n));
                    if !(named || anonymous && !fields.is_empty()) {
                        continue;
                    }
                    vlen += 1;
                    for word in [name_off, member_type, offset] {
                        tail.extend_from_slice(&word.to_ne_bytes());
                    }
                    let reach = if anonymous {
                        Some(fields.clone())
                    } else {
                        fields_of(member_type)?
                    };
                    work.push((member_type, Reach::Type(reach)));
                }
                ty.with_info(vlen, tail)
            }
            kind::FUNC_PROTO | kind::DATASEC | kind::DECL_TAG | kind::VAR | kind::FUNC => Type {
                size_or_type: 0,
                ..ty.with_info(0, Vec::new())
            },
            kind::PTR
            | kind::TYPEDEF
            | kind::VOLATILE
            | kind::CONST
            | kind::RESTRICT
            | kind::TYPE_TAG => {
                let target = ty.size_or_type;
                work.push((target, Reach::Type(fields_of(target)?)));
                ty
            }
            kind::ARRAY => {
                for target in [u32_at(&ty.tail, 0), u32_at(&ty.tail, 4)]
                    .into_iter()
                    .flatten()
                {
                    work.push((target, Reach::Type(fields_of(target)?)));
                }
                ty
            }
            _ => ty,
        };
        kept.insert(id, cut);
    }

    // The strings the copy keeps, and the copy.
    let mut out_strings: Vec<u8> = vec![0];
    let mut at_of: HashMap<u32, u32> = HashMap::from([(0, 0)]);
    let mut string = |off: u32, out_strings: &mut Vec<u8>| -> Result<u32, String> {
        if let Some(&at) = at_of.get(&off) {
            return Ok(at);
        }
        let text = name(off)
            .map(str::to_owned)
            .map_or_else(|| read_string(kernel, &header, off), Ok)?;
        let at = out_strings.len() as u32;
        out_strings.extend_from_slice(text.as_bytes());
        out_strings.push(0);
        at_of.insert(off, at);
        Ok(at)
    };
    let last = kept.keys().copied().max().unwrap_or(0);
    let mut types: Vec<u8> = Vec::new();
    for id in 1..=last {
        let Some(ty) = kept.get(&id) else {
            // An anonymous forward declaration: nothing relocates to it.
            types.extend_from_slice(&0u32.to_ne_bytes());
            types.extend_from_slice(&(kind::FWD << 24).to_ne_bytes());
            types.extend_from_slice(&0u32.to_ne_bytes());
            continue;
        };
        let name_off = string(ty.name_off, &mut out_strings)?;
        types.extend_from_slice(&name_off.to_ne_bytes());
        types.extend_from_slice(&ty.info.to_ne_bytes());
        types.extend_from_slice(&ty.size_or_type.to_ne_bytes());
        if ty.composite() {
            for (member_name, member_type, offset) in ty.members() {
                let member_name = string(member_name, &mut out_strings)?;
                for word in [member_name, member_type, offset] {
                    types.extend_from_slice(&word.to_ne_bytes());
                }
            }
        } else if matches!(ty.kind(), kind::ENUM | kind::ENUM64) {
            // Each value's name is a string too.
            let step = if ty.kind() == kind::ENUM { 8 } else { 12 };
            for value in ty.tail.chunks_exact(step) {
                let value_name = string(u32_at(value, 0).unwrap_or(0), &mut out_strings)?;
                types.extend_from_slice(&value_name.to_ne_bytes());
                types.extend_from_slice(&value[4..]);
            }
        } else {
            types.extend_from_slice(&ty.tail);
        }
    }
    let mut out = Vec::with_capacity(HEADER_LEN + types.len() + out_strings.len());
    out.extend_from_slice(&MAGIC.to_ne_bytes());
    out.extend_from_slice(&[1, 0]);
    let words = [
        HEADER_LEN as u32,
        0,
        types.len() as u32,
        types.len() as u32,
        out_strings.len() as u32,
    ];
    for word in words {
        out.extend_from_slice(&word.to_ne_bytes());
    }
    out.extend_from_slice(&types);
    out.extend_from_slice(&out_strings);
    Ok(out)
}

/// How a kept type was reached.
enum Reach {
    /// By name, for its id alone.
    Id,
    /// As a type the object reads (a wanted struct, or a field's type): with the fields kept
    /// where it is a struct or union.
    Type(Option<HashSet<String>>),
}

fn read_type(
    source: &(impl Source + ?Sized),
    header: &Header,
    offsets: &[u32],
    id: u32,
) -> Result<Type, String> {
    let at = *offsets
        .get(id as usize)
        .filter(|_| id != 0)
        .ok_or_else(|| format!("BTF type {id} out of range"))?;
    let at = header.type_off + u64::from(at);
    let mut head = [0u8; 12];
    source
        .read_exact_at(&mut head, at)
        .map_err(|e| format!("cannot read BTF type {id}: {e}"))?;
    let mut bytes = vec![0u8; type_len(u32_at(&head, 4).unwrap_or(0))?];
    source
        .read_exact_at(&mut bytes, at)
        .map_err(|e| format!("cannot read BTF type {id}: {e}"))?;
    Ok(Type::parse(&bytes))
}

/// The string at `off` of the string section: a name of the object's BTF, or one the first
/// pass over the kernel's did not look for (a kept type's or member's).
fn read_string(
    source: &(impl Source + ?Sized),
    header: &Header,
    off: u32,
) -> Result<String, String> {
    let mut text = Vec::new();
    let mut piece = [0u8; 64];
    let mut at = u64::from(off);
    loop {
        let len = usize::try_from(header.str_len.saturating_sub(at))
            .unwrap_or(64)
            .min(64);
        if len == 0 {
            return Err(format!("BTF string {off} runs past the section"));
        }
        source
            .read_exact_at(&mut piece[..len], header.str_off + at)
            .map_err(|e| format!("cannot read BTF string {off}: {e}"))?;
        match piece[..len].iter().position(|&b| b == 0) {
            Some(end) => {
                text.extend_from_slice(&piece[..end]);
                break;
            }
            None => text.extend_from_slice(&piece[..len]),
        }
        at += len as u64;
    }
    String::from_utf8(text).map_err(|_| format!("BTF string {off} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF of `types` (each a head's three words and a tail) and `strings`.
    fn btf(types: &[(u32, u32, u32, Vec<u32>)], strings: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, info, size, tail) in types {
            for w in [*name, *info, *size].iter().chain(tail) {
                body.extend_from_slice(&w.to_ne_bytes());
            }
        }
        let mut out = MAGIC.to_ne_bytes().to_vec();
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            body.len() as u32,
            body.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_ne_bytes());
        }
        out.extend(body);
        out.extend_from_slice(strings);
        out
    }

    fn info(kind: u32, vlen: u32) -> u32 {
        (kind << 24) | vlen
    }

    /// Each type of `bytes`: (id, kind, name, size or type, members' (name, type, offset)).
    type Decoded = (u32, u32, String, u32, Vec<(String, u32, u32)>);

    fn decode(bytes: &[u8]) -> Vec<Decoded> {
        let header = header(bytes).unwrap();
        let mut out = Vec::new();
        for_each_type(bytes, &header, |id, _, ty| {
            let name = |off| read_string(bytes, &header, off).unwrap();
            let members = if ty.composite() {
                ty.members().map(|(n, t, o)| (name(n), t, o)).collect()
            } else {
                Vec::new()
            };
            out.push((id, ty.kind(), name(ty.name_off), ty.size_or_type, members));
        })
        .unwrap();
        out
    }

    fn wanted_of(pairs: &[(&str, &[&str])]) -> Wanted {
        Wanted {
            fields: pairs
                .iter()
                .map(|(s, f)| (s.to_string(), f.iter().map(|f| f.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn the_copy_keeps_ids_fields_named_and_their_types_and_no_more() {
        // 0 "", 1 "int", 5 "s", 7 "a", 9 "b", 11 "c", 13 "other", 19 "x", 21 "f", 23 "unused"
        let strings = b"\0int\0s\0a\0b\0c\0other\0x\0f\0unused\0";
        let kernel = btf(
            &[
                (1, info(kind::INT, 0), 4, vec![32]),
                (
                    5,
                    info(kind::STRUCT, 4),
                    16,
                    vec![7, 1, 0, 9, 1, 32, 11, 3, 64, 0, 8, 96],
                ),
                (0, info(kind::PTR, 0), 4, vec![]),
                (13, info(kind::STRUCT, 1), 4, vec![19, 1, 0]),
                (21, info(kind::FUNC, 1), 6, vec![]),
                (0, info(kind::FUNC_PROTO, 1), 1, vec![0, 3]),
                (23, info(kind::STRUCT, 1), 4, vec![19, 1, 0]),
                // 8: an anonymous union inside s, holding b and x
                (0, info(kind::UNION, 2), 4, vec![9, 1, 0, 19, 1, 0]),
            ],
            strings,
        );
        let want = wanted_of(&[("s", &["a", "c", "x"])]);
        let copy = prune(kernel.as_slice(), &want, &[("f", kind::FUNC)]).unwrap();
        let types = decode(&copy);
        let s = |x: &str| x.to_string();
        assert_eq!(
            types,
            vec![
                (1, kind::INT, s("int"), 4, vec![]),
                // b is not wanted; the anonymous member stays, for x within it
                (
                    2,
                    kind::STRUCT,
                    s("s"),
                    16,
                    vec![(s("a"), 1, 0), (s("c"), 3, 64), (s(""), 8, 96)]
                ),
                (3, kind::PTR, s(""), 4, vec![]),
                // reached by a pointer: kept, with no field
                (4, kind::STRUCT, s("other"), 4, vec![]),
                // kept for its id: what it refers to is not
                (5, kind::FUNC, s("f"), 0, vec![]),
                (6, kind::FWD, s(""), 0, vec![]),
                (7, kind::FWD, s(""), 0, vec![]),
                (8, kind::UNION, s(""), 4, vec![(s("x"), 1, 0)]),
            ]
        );
        // A name the kernel lacks is left out.
        let without = prune(kernel.as_slice(), &want, &[("g", kind::FUNC)]).unwrap();
        assert!(decode(&without).iter().all(|t| t.2 != "f" && t.2 != "g"));
    }

    #[test]
    fn what_the_object_reads_is_its_own_structs_fields() {
        let strings = b"\0int\0s\0a\0b\0";
        let object = btf(
            &[
                (1, info(kind::INT, 0), 4, vec![32]),
                (5, info(kind::STRUCT, 2), 8, vec![7, 1, 0, 9, 1, 32]),
                (0, info(kind::STRUCT, 1), 4, vec![7, 1, 0]),
            ],
            strings,
        );
        assert_eq!(wanted(&object).unwrap(), wanted_of(&[("s", &["a", "b"])]));
        assert!(wanted(&object[..10]).is_err());
        let mut other_order = object.clone();
        other_order[..2].copy_from_slice(&MAGIC.swap_bytes().to_ne_bytes());
        assert!(wanted(&other_order).unwrap_err().contains("byte order"));
    }

    #[test]
    fn a_cut_or_unknown_btf_is_an_error_not_a_panic() {
        let strings = b"\0s\0";
        let kernel = btf(&[(1, info(kind::STRUCT, 3), 12, vec![0, 0, 0])], strings);
        let want = wanted_of(&[("s", &["a"])]);
        assert!(prune(kernel.as_slice(), &want, &[]).is_err());
        let odd = btf(&[(1, info(31, 0), 0, vec![])], strings);
        assert!(
            prune(odd.as_slice(), &want, &[])
                .unwrap_err()
                .contains("kind 31")
        );
        for len in 0..kernel.len() {
            let _ = prune(&kernel[..len], &want, &[]);
        }
    }

    /// The real kernel's BTF, where this machine has one: the copy keeps the iterator's and
    /// the tracepoints' ids, and each field the object reads at the kernel's offset.
    #[test]
    fn the_kernels_btf_copied_for_the_object_keeps_what_it_reads() {
        let Ok(full) = std::fs::read(super::super::KERNEL_BTF) else {
            return;
        };
        let object = elf_section(super::super::loader::OBJECT, ".BTF").expect("a .BTF section");
        let want = wanted(object).unwrap();
        assert!(want.fields["task_struct"].contains("nsproxy"));
        let ids = super::super::loader::KERNEL_IDS;
        let file = std::fs::File::open(super::super::KERNEL_BTF).unwrap();
        let copy = prune(&file, &want, &ids).unwrap();
        assert!(
            copy.len() < full.len() / 4,
            "{} of {}",
            copy.len(),
            full.len()
        );
        let (kernel, small) = (decode(&full), decode(&copy));
        for (name, kind) in ids {
            let find = |types: &[Decoded]| {
                types
                    .iter()
                    .find(|t| t.2 == name && t.1 == kind)
                    .map(|t| t.0)
            };
            assert_eq!(find(&small), find(&kernel), "{name}");
        }
        for (name, fields) in &want.fields {
            let Some(k) = kernel.iter().find(|t| &t.2 == name && !t.4.is_empty()) else {
                continue;
            };
            let c = &small[k.0 as usize - 1];
            for field in fields {
                let at = |t: &Decoded| t.4.iter().find(|m| &m.0 == field).map(|m| m.2);
                assert_eq!(at(c), at(k), "{name}.{field}");
            }
        }
        assert!(aya::Btf::parse(&copy, aya::Endianness::default()).is_ok());
    }
}
