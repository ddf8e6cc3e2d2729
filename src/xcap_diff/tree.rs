//! A whole-document PUT as an RFC 5261 patch (RFC 5874 §3 XD-05a, XD-13; issue #13 scope 5):
//! the element trees of the previous and the new version are compared, element children
//! aligned by a longest common subsequence of their text, and the differences written as
//! `<add>`, `<replace>` and `<remove>` operations with positional selectors (`*/*[2]/*[1]`),
//! which need no namespace prefixes, so the operations can be recorded with the change and
//! written into any diff document later. Pure (layer L0).
//!
//! Applied, the patch gives the new version as a tree (Canonical XML: names, attributes, text,
//! whitespace text included): each element child travels with the whitespace text before it
//! (added with it, removed with `ws="before"`); the spelling of start tags (attribute order,
//! quotes) is not carried. An element whose other text,
//! comments or trailing whitespace changed, or whose namespaced attributes changed, is
//! replaced whole. `None` when a patch cannot say it (a different root element, a change
//! outside it) or would not be smaller than the new document.

use roxmltree::{Document, Node};
use serde_json::{json, Value};

use super::{AddPos, PatchOp};
use crate::xml::standalone_text;

/// Children compared pairwise at most (longest common subsequence table size); beyond it the
/// document is reported to be fetched.
const MAX_TABLE: usize = 1 << 20;

/// The operations that turn `old` (whose text is `old_text`) into `new`.
pub fn tree_patch(
    old_text: &str,
    old: &Document,
    new_text: &str,
    new: &Document,
) -> Option<Vec<PatchOp>> {
    let (a, b) = (old.root_element(), new.root_element());
    // The prolog and what follows the root element: a patch cannot change them.
    let (ra, rb) = (a.range(), b.range());
    let outside_same =
        old_text[..ra.start] == new_text[..rb.start] && old_text[ra.end..] == new_text[rb.end..];
    if a.tag_name() != b.tag_name() || !same_namespaces(a, b) || !outside_same {
        return None;
    }
    let mut diff = Diff {
        old_text,
        new_text,
        ops: Vec::new(),
        budget: new_text.len(),
    };
    if !diff.element(a, b, "*") {
        return None;
    }
    // No operation but other bytes (attribute order, quotes, `<e/>` for `<e></e>`): not
    // `<body-not-changed/>`, which says the body is the same; fetch it.
    if diff.ops.is_empty() && old_text != new_text {
        return None;
    }
    Some(diff.ops)
}

struct Diff<'t> {
    old_text: &'t str,
    new_text: &'t str,
    ops: Vec<PatchOp>,
    /// Bytes of content the operations may still carry before the patch is no smaller.
    budget: usize,
}

/// An element child with the whitespace text before it.
#[derive(Clone, Copy)]
struct Unit<'t, 'a, 'input> {
    ws: &'t str,
    el: Node<'a, 'input>,
}

/// The element children of `n` as units, and the whitespace after the last one; `None` when
/// `n` holds other text, comments or processing instructions.
fn units<'t, 'a, 'i>(text: &'t str, n: Node<'a, 'i>) -> Option<(Vec<Unit<'t, 'a, 'i>>, &'t str)> {
    let mut out = Vec::new();
    // The whitespace run since the last element (adjacent text nodes are contiguous).
    let mut ws: Option<std::ops::Range<usize>> = None;
    for c in n.children() {
        if c.is_element() {
            let before = ws.take().map_or("", |r| &text[r]);
            out.push(Unit { ws: before, el: c });
        } else if c.is_text() && is_xml_space(c.text().unwrap_or("")) {
            let r = c.range();
            ws = Some(match ws {
                Some(prev) => prev.start..r.end,
                None => r,
            });
        } else {
            return None;
        }
    }
    Some((out, ws.map_or("", |r| &text[r])))
}

/// Only XML's whitespace (S, XML 1.0 §2.3): `ws="before"` removes nothing else.
fn is_xml_space(text: &str) -> bool {
    text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

/// One step of the alignment of two unit lists.
enum Step<'t, 'a, 'input> {
    Keep,
    Old(Unit<'t, 'a, 'input>),
    New(Unit<'t, 'a, 'input>),
}

impl<'t> Diff<'t> {
    fn push(&mut self, op: PatchOp) -> bool {
        let size = match &op {
            PatchOp::Add { sel, content, .. } | PatchOp::Replace { sel, content, .. } => {
                sel.len() + content.len() + 32
            }
            PatchOp::Remove { sel, .. } => sel.len() + 34,
        };
        self.ops.push(op);
        match self.budget.checked_sub(size) {
            Some(left) => {
                self.budget = left;
                true
            }
            None => false,
        }
    }

    /// Operations for `a` → `b` (same name, same in-scope namespaces) at `sel`; false when the
    /// patch has grown past the document.
    fn element(&mut self, a: Node, b: Node, sel: &str) -> bool {
        if self.old_text[a.range()] == self.new_text[b.range()] {
            return true;
        }
        let Some(attribute_ops) = attribute_ops(a, b, sel) else {
            return self.replace(b, sel);
        };
        let (Some((old, old_end)), Some((new, new_end))) =
            (units(self.old_text, a), units(self.new_text, b))
        else {
            return self.replace(b, sel);
        };
        if old_end != new_end {
            return self.replace(b, sel);
        }
        for op in attribute_ops {
            if !self.push(op) {
                return false;
            }
        }
        let Some(steps) = self.align(&old, &new) else {
            return self.replace(b, sel);
        };
        // `done`: element children already in their final place, before the cursor.
        let mut done = 0usize;
        let mut i = 0;
        while i < steps.len() {
            if let Step::Keep = steps[i] {
                done += 1;
                i += 1;
                continue;
            }
            // A gap: the old units that go and the new ones that come, in order.
            let (mut gone, mut come) = (Vec::new(), Vec::new());
            while let Some(step) = steps.get(i) {
                match step {
                    Step::Keep => break,
                    Step::Old(u) => gone.push(*u),
                    Step::New(u) => come.push(*u),
                }
                i += 1;
            }
            if !self.gap(&gone, &come, sel, &mut done) {
                return false;
            }
        }
        true
    }

    /// Operations for one gap of the alignment at the cursor `done`: elements that keep their
    /// identity (name and first attribute, e.g. an entry's `uri`) are diffed with their new
    /// version, in order; the others are removed and added.
    fn gap(&mut self, gone: &[Unit], come: &[Unit], sel: &str, done: &mut usize) -> bool {
        let mut pairs = Vec::new();
        let mut from = 0;
        for (j, y) in come.iter().enumerate() {
            if let Some(i) = (from..gone.len()).find(|&i| identity(gone[i].el) == identity(y.el)) {
                pairs.push((i, j));
                from = i + 1;
            }
        }
        pairs.push((gone.len(), come.len())); // the end of the gap
        let (mut gi, mut ci) = (0, 0);
        for (i, j) in pairs {
            for x in &gone[gi..i] {
                if !self.remove(x, sel, *done) {
                    return false;
                }
            }
            for y in &come[ci..j] {
                if !self.add(y, sel, done) {
                    return false;
                }
            }
            if let (Some(x), Some(y)) = (gone.get(i), come.get(j)) {
                let ok = if x.ws == y.ws && same_namespaces(x.el, y.el) {
                    let at = format!("{sel}/*[{}]", *done + 1);
                    *done += 1;
                    self.element(x.el, y.el, &at)
                } else {
                    self.remove(x, sel, *done) && self.add(y, sel, done)
                };
                if !ok {
                    return false;
                }
            }
            (gi, ci) = (i + 1, j + 1);
        }
        true
    }

    /// Removes the element after the cursor, with the whitespace before it.
    fn remove(&mut self, x: &Unit, sel: &str, done: usize) -> bool {
        self.push(PatchOp::Remove {
            sel: format!("{sel}/*[{}]", done + 1),
            ws_before: !x.ws.is_empty(),
        })
    }

    /// Adds the element, with the whitespace before it, at the cursor.
    fn add(&mut self, y: &Unit, sel: &str, done: &mut usize) -> bool {
        let content = format!("{}{}", y.ws, standalone_text(self.new_text, y.el));
        let op = if *done == 0 {
            PatchOp::Add {
                sel: sel.to_string(),
                pos: Some(AddPos::Prepend),
                attribute: None,
                content,
            }
        } else {
            PatchOp::Add {
                sel: format!("{sel}/*[{done}]"),
                pos: Some(AddPos::After),
                attribute: None,
                content,
            }
        };
        *done += 1;
        self.push(op)
    }

    fn replace(&mut self, b: Node, sel: &str) -> bool {
        let content = standalone_text(self.new_text, b);
        self.push(PatchOp::Replace {
            sel: sel.to_string(),
            content,
            attribute: false,
        })
    }

    /// The longest common subsequence of two child lists by their text; `None` when the
    /// lists are too long to compare this way.
    fn align<'a, 'i>(
        &self,
        old: &[Unit<'t, 'a, 'i>],
        new: &[Unit<'t, 'a, 'i>],
    ) -> Option<Vec<Step<'t, 'a, 'i>>> {
        let same = |x: &Unit, y: &Unit| {
            x.ws == y.ws && self.old_text[x.el.range()] == self.new_text[y.el.range()]
        };
        // Common ends first: edits are usually local.
        let head = old.iter().zip(new).take_while(|(x, y)| same(x, y)).count();
        let tail = old[head..]
            .iter()
            .rev()
            .zip(new[head..].iter().rev())
            .take_while(|(x, y)| same(x, y))
            .count();
        let (a, b) = (&old[head..old.len() - tail], &new[head..new.len() - tail]);
        if (a.len() + 1).saturating_mul(b.len() + 1) > MAX_TABLE {
            return None;
        }
        // lcs[i][j]: the common subsequence length of a[i..] and b[j..].
        let w = b.len() + 1;
        let mut lcs = vec![0u32; (a.len() + 1) * w];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                lcs[i * w + j] = if same(&a[i], &b[j]) {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let mut steps: Vec<Step> = (0..head).map(|_| Step::Keep).collect();
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && same(&a[i], &b[j]) {
                steps.push(Step::Keep);
                i += 1;
                j += 1;
            } else if j < b.len() && (i == a.len() || lcs[i * w + j + 1] >= lcs[(i + 1) * w + j]) {
                steps.push(Step::New(b[j]));
                j += 1;
            } else {
                steps.push(Step::Old(a[i]));
                i += 1;
            }
        }
        steps.extend((0..tail).map(|_| Step::Keep));
        Some(steps)
    }
}

/// What says two versions are of the same element: its name and first attribute (the
/// identifying `uri`, `name` or `id` of the XCAP usages).
fn identity<'a>(n: Node<'a, '_>) -> (Option<&'a str>, &'a str, Option<(&'a str, &'a str)>) {
    let first = n.attributes().next().map(|a| (a.name(), a.value()));
    (n.tag_name().namespace(), n.tag_name().name(), first)
}

/// The same namespace bindings in scope (so unchanged text means the same names).
fn same_namespaces(a: Node, b: Node) -> bool {
    let mut x: Vec<(Option<&str>, &str)> = a.namespaces().map(|n| (n.name(), n.uri())).collect();
    let mut y: Vec<(Option<&str>, &str)> = b.namespaces().map(|n| (n.name(), n.uri())).collect();
    x.sort_unstable();
    y.sort_unstable();
    x == y
}

/// Attribute operations (RFC 5261 §4.3 `type="@name"`, §4.4, §4.5) for attributes without a
/// namespace; `None` when a namespaced attribute changed (its selector needs a prefix).
fn attribute_ops(a: Node, b: Node, sel: &str) -> Option<Vec<PatchOp>> {
    let mut ops = Vec::new();
    for x in a.attributes() {
        let now = b
            .attributes()
            .find(|y| y.namespace() == x.namespace() && y.name() == x.name());
        match now {
            Some(y) if y.value() == x.value() => {}
            _ if x.namespace().is_some() => return None,
            Some(y) => ops.push(PatchOp::Replace {
                sel: format!("{sel}/@{}", x.name()),
                content: y.value().to_string(),
                attribute: true,
            }),
            None => ops.push(PatchOp::Remove {
                sel: format!("{sel}/@{}", x.name()),
                ws_before: false,
            }),
        }
    }
    for y in b.attributes() {
        if a.attributes()
            .any(|x| x.namespace() == y.namespace() && x.name() == y.name())
        {
            continue;
        }
        if y.namespace().is_some() {
            return None;
        }
        ops.push(PatchOp::Add {
            sel: sel.to_string(),
            pos: None,
            attribute: Some(y.name().to_string()),
            content: y.value().to_string(),
        });
    }
    Some(ops)
}

/// The operations as recorded with the change (JSON).
pub fn encode(ops: &[PatchOp]) -> String {
    let items: Vec<Value> = ops
        .iter()
        .map(|op| match op {
            PatchOp::Add {
                sel,
                pos,
                attribute,
                content,
            } => json!(["add", sel, pos.map(AddPos::as_str), attribute, content]),
            PatchOp::Replace {
                sel,
                content,
                attribute,
            } => json!(["replace", sel, content, attribute]),
            PatchOp::Remove { sel, ws_before } => json!(["remove", sel, ws_before]),
        })
        .collect();
    Value::Array(items).to_string()
}

/// Recorded operations back; `None` when the text is not what [`encode`] writes.
pub fn decode(text: &str) -> Option<Vec<PatchOp>> {
    let items: Vec<Value> = serde_json::from_str(text).ok()?;
    items
        .iter()
        .map(|item| {
            let f = item.as_array()?;
            let s = |i: usize| f.get(i).and_then(Value::as_str).map(str::to_string);
            match f.first()?.as_str()? {
                "add" => Some(PatchOp::Add {
                    sel: s(1)?,
                    pos: match f.get(2)?.as_str() {
                        None => None,
                        Some("prepend") => Some(AddPos::Prepend),
                        Some("before") => Some(AddPos::Before),
                        Some("after") => Some(AddPos::After),
                        Some(_) => return None,
                    },
                    attribute: s(3),
                    content: s(4)?,
                }),
                "replace" => Some(PatchOp::Replace {
                    sel: s(1)?,
                    content: s(2)?,
                    attribute: f.get(3)?.as_bool()?,
                }),
                "remove" => Some(PatchOp::Remove {
                    sel: s(1)?,
                    ws_before: f.get(2)?.as_bool()?,
                }),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(old: &str, new: &str) -> Option<Vec<PatchOp>> {
        let (a, b) = (Document::parse(old).unwrap(), Document::parse(new).unwrap());
        tree_patch(old, &a, new, &b)
    }

    /// Large enough that a patch of a few operations is smaller.
    const OLD: &str = "<l xmlns=\"urn:x\">\n  <e uri=\"a\"/>\n  <e uri=\"b\"><n>B</n></e>\n  <e uri=\"c\"/>\n  <e uri=\"sip:long-enough-1@example.com\"/>\n  <e uri=\"sip:long-enough-2@example.com\"/>\n</l>";

    // XD-05c: the same body again is a patch without operations (body-not-changed).
    #[test]
    fn same_body_has_no_operations() {
        assert_eq!(diff(OLD, OLD), Some(Vec::new()));
    }

    // XD-09, RFC 5261 §4.3: a new element travels with the whitespace before it, after its
    // previous sibling element.
    #[test]
    fn added_element_with_its_whitespace() {
        let new = OLD.replace("\n  <e uri=\"c\"/>", "\n  <e uri=\"c\"/>\n  <e uri=\"d\"/>");
        assert_eq!(
            diff(OLD, &new),
            Some(vec![PatchOp::Add {
                sel: "*/*[3]".into(),
                pos: Some(AddPos::After),
                attribute: None,
                content: "\n  <e xmlns=\"urn:x\" uri=\"d\"/>".into(),
            }])
        );
        let first = OLD.replace("\n  <e uri=\"a\"/>", "\n  <e uri=\"z\"/>\n  <e uri=\"a\"/>");
        assert!(matches!(
            diff(OLD, &first).as_deref(),
            Some([PatchOp::Add { sel, pos: Some(AddPos::Prepend), .. }]) if sel == "*"
        ));
    }

    // XD-10, RFC 5261 §4.5: a removed element takes the whitespace before it (ws="before").
    #[test]
    fn removed_element_with_its_whitespace() {
        let new = OLD.replace("\n  <e uri=\"a\"/>", "");
        assert_eq!(
            diff(OLD, &new),
            Some(vec![PatchOp::Remove {
                sel: "*/*[1]".into(),
                ws_before: true,
            }])
        );
    }

    // RFC 5261 §4.3–§4.5: attribute edits of an element that keeps its identity; a changed
    // text replaces the innermost element holding it.
    #[test]
    fn attributes_and_text_inside_kept_elements() {
        let new = OLD
            .replace("<n>B</n>", "<n>Bee</n>")
            .replace("<e uri=\"c\"/>", "<e uri=\"c\" p=\"1\"/>");
        assert_eq!(
            diff(OLD, &new),
            Some(vec![
                PatchOp::Replace {
                    sel: "*/*[2]/*[1]".into(),
                    content: "<n xmlns=\"urn:x\">Bee</n>".into(),
                    attribute: false,
                },
                PatchOp::Add {
                    sel: "*/*[3]".into(),
                    pos: None,
                    attribute: Some("p".into()),
                    content: "1".into(),
                },
            ])
        );
    }

    // XD-05b: a different root, a change outside it, or a patch no smaller than the document
    // is reported to be fetched; the recorded form reads back as written.
    #[test]
    fn fetch_form_and_record_round_trip() {
        assert_eq!(diff(OLD, "<m xmlns=\"urn:x\"/>"), None);
        assert_eq!(diff(OLD, &format!("<!-- c -->{OLD}")), None);
        assert_eq!(diff("<l><a>1</a></l>", "<l><a>2</a></l>"), None);
        let new = OLD
            .replace("\n  <e uri=\"a\"/>", "")
            .replace("<n>B</n>", "<n>C</n>");
        let ops = diff(OLD, &new).unwrap();
        assert_eq!(decode(&encode(&ops)), Some(ops));
        assert_eq!(decode("[[\"move\", \"*\"]]"), None);
    }

    // XD-05c: the same tree in other bytes is no `<body-not-changed/>`; a no-break space is
    // text, not whitespace `ws="before"` could remove, so its element is replaced whole.
    #[test]
    fn other_bytes_and_non_xml_space() {
        let reordered = OLD.replace("<l xmlns=\"urn:x\">", "<l  xmlns=\"urn:x\" >");
        assert_eq!(diff(OLD, &reordered), None);
        // The root now holds text: replaced whole, which is no smaller than the document.
        let nbsp = OLD.replace("\n  <e uri=\"c\"/>", "\u{a0}<e uri=\"c\"/>");
        assert_eq!(diff(OLD, &nbsp), None);
    }
}
