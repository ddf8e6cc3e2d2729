//! The RFC 5261 patch of one recorded XCAP edit (RFC 4825 §7.4–§7.9 → RFC 5261 §4.3–§4.5;
//! XD-07…XD-10), built from the change log's [`Edit`] alone, so patches are exact after a
//! restart too. Element positions come from the record: an element PUT that created a node is
//! added after its preceding sibling element, before its following one, or as its parent's
//! first or last child, as the record's placement says; a replaced or deleted element is
//! addressed by position among its parent's element children, which cannot match anything
//! else. Selector steps keep the request's names and predicates,
//! written with the diff document's prefixes (XD-08).

use thiserror::Error;

use super::{AddPos, PatchOp, Prefixes};
use crate::event::{Edit, EditKind, Placement};
use crate::xcap::selector::{
    Bindings, ExpandedName, NodeSelector, ResolvedNameTest, ResolvedStep, ResolvedTerminal,
};

/// Why an edit has no patch form; the notifier then reports the document to be fetched
/// (XD-05b), which is always correct.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatchError {
    #[error("the recorded node selector does not resolve")]
    Selector,
    #[error("an attribute value holds both quote characters: no XPath literal can say it")]
    Literal,
    #[error("the record lacks the value or position the patch needs")]
    Incomplete,
    #[error("a patch cannot add or remove the root element")]
    Root,
}

/// The patch operations for `edit` on a document whose application usage's default
/// namespace is `default_ns` (RFC 4825 §6.4: unprefixed selector names are in it).
pub fn patch_ops(
    edit: &Edit,
    default_ns: Option<&str>,
    prefixes: &mut Prefixes,
) -> Result<Vec<PatchOp>, PatchError> {
    if edit.kind == EditKind::ReplaceDocument {
        // Positional selectors only: no prefixes needed.
        let recorded = edit.value.as_deref().ok_or(PatchError::Incomplete)?;
        return super::tree::decode(recorded).ok_or(PatchError::Incomplete);
    }
    let bindings: Bindings = edit.namespaces.iter().cloned().collect();
    let parsed = NodeSelector::parse(&edit.node_selector).map_err(|_| PatchError::Selector)?;
    let resolved = parsed
        .resolve(&bindings, default_ns)
        .map_err(|_| PatchError::Selector)?;
    let steps = resolved
        .steps
        .iter()
        .map(|s| step_text(s, prefixes))
        .collect::<Result<Vec<String>, PatchError>>()?;
    let Some((_, parent)) = steps.split_last() else {
        return Err(PatchError::Selector);
    };
    let parent = parent.join("/");
    // The element at `position` among the parent's element children (XPath `*[n]`).
    let nth = |n: u32| {
        if parent.is_empty() {
            format!("*[{n}]")
        } else {
            format!("{parent}/*[{n}]")
        }
    };
    let op = match edit.kind {
        EditKind::PutElement => {
            let content = edit.value.clone().ok_or(PatchError::Incomplete)?;
            let position = edit.position.ok_or(PatchError::Incomplete)?;
            if !edit.created {
                PatchOp::Replace {
                    sel: nth(position),
                    content,
                    attribute: false,
                }
            } else if parent.is_empty() {
                return Err(PatchError::Root);
            } else {
                // RFC 5261 §4.3 (XD-09): placed exactly where the XDMS put it (RFC 4825 §8.2.3).
                let (sel, pos) = match edit.placement.ok_or(PatchError::Incomplete)? {
                    Placement::AfterPrevious if position > 1 => {
                        (nth(position - 1), Some(AddPos::After))
                    }
                    // The next element is still number `position` in the previous version.
                    Placement::BeforeNext => (nth(position), Some(AddPos::Before)),
                    Placement::Append => (parent, None),
                    Placement::Prepend => (parent, Some(AddPos::Prepend)),
                    Placement::AfterPrevious => return Err(PatchError::Incomplete),
                };
                PatchOp::Add {
                    sel,
                    pos,
                    attribute: None,
                    content,
                }
            }
        }
        // Taken above (its record holds the operations themselves).
        EditKind::ReplaceDocument => return Err(PatchError::Incomplete),
        EditKind::DeleteElement => {
            if parent.is_empty() {
                return Err(PatchError::Root);
            }
            PatchOp::Remove {
                sel: nth(edit.position.ok_or(PatchError::Incomplete)?),
                ws_before: false,
            }
        }
        EditKind::PutAttribute | EditKind::DeleteAttribute => {
            let Some(ResolvedTerminal::Attribute(name)) = &resolved.terminal else {
                return Err(PatchError::Selector);
            };
            let element = steps.join("/");
            let name = qualified(name, prefixes);
            match (edit.kind, edit.created) {
                (EditKind::DeleteAttribute, _) => PatchOp::Remove {
                    sel: format!("{element}/@{name}"),
                    ws_before: false,
                },
                (_, true) => PatchOp::Add {
                    sel: element,
                    pos: None,
                    attribute: Some(name),
                    content: edit.value.clone().ok_or(PatchError::Incomplete)?,
                },
                (_, false) => PatchOp::Replace {
                    sel: format!("{element}/@{name}"),
                    content: edit.value.clone().ok_or(PatchError::Incomplete)?,
                    attribute: true,
                },
            }
        }
    };
    Ok(vec![op])
}

/// A name with the diff document's prefix for its namespace (none: no namespace).
fn qualified(name: &ExpandedName, prefixes: &mut Prefixes) -> String {
    match &name.ns {
        Some(ns) => format!("{}:{}", prefixes.prefix_for(ns), name.local),
        None => name.local.clone(),
    }
}

/// One XPath step: name test, then position, then attribute test (RFC 4825 §6.3
/// `by-pos-attr` reads the same in XPath).
fn step_text(step: &ResolvedStep, prefixes: &mut Prefixes) -> Result<String, PatchError> {
    let mut out = match &step.name {
        ResolvedNameTest::Any => "*".to_string(),
        ResolvedNameTest::Name(n) => qualified(n, prefixes),
    };
    if let Some(p) = step.position {
        out.push_str(&format!("[{p}]"));
    }
    if let Some((name, value)) = &step.attr {
        let literal = if !value.contains('"') {
            format!("\"{value}\"")
        } else if !value.contains('\'') {
            format!("'{value}'")
        } else {
            return Err(PatchError::Literal);
        };
        out.push_str(&format!("[@{}={literal}]", qualified(name, prefixes)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RL: &str = "urn:ietf:params:xml:ns:resource-lists";

    fn edit(
        kind: EditKind,
        sel: &str,
        value: Option<&str>,
        position: Option<u32>,
        created: bool,
    ) -> Edit {
        Edit {
            kind,
            node_selector: sel.into(),
            namespaces: vec![],
            value: value.map(str::to_string),
            position,
            created,
            placement: created.then_some(Placement::AfterPrevious),
        }
    }

    fn ops(e: &Edit) -> Vec<PatchOp> {
        patch_ops(e, Some(RL), &mut Prefixes::default()).unwrap()
    }

    // RFC 5261 §4.3 (XD-09b/c): a created element goes after its preceding sibling, or first.
    #[test]
    fn created_elements() {
        let sel = "resource-lists/list[@name=\"friends\"]/entry[@uri=\"sip:b@x\"]";
        let e = edit(
            EditKind::PutElement,
            sel,
            Some("<entry xmlns=\"u\"/>"),
            Some(3),
            true,
        );
        assert_eq!(
            ops(&e),
            vec![PatchOp::Add {
                sel: "x1:resource-lists/x1:list[@name=\"friends\"]/*[2]".into(),
                pos: Some(AddPos::After),
                attribute: None,
                content: "<entry xmlns=\"u\"/>".into()
            }]
        );
        let first = Edit {
            position: Some(1),
            placement: Some(Placement::Prepend),
            ..e.clone()
        };
        let before = Edit {
            placement: Some(Placement::BeforeNext),
            ..e.clone()
        };
        assert!(
            matches!(&ops(&before)[0], PatchOp::Add { pos: Some(AddPos::Before), sel, .. } if sel.ends_with("/*[3]"))
        );
        let last = Edit {
            placement: Some(Placement::Append),
            ..e.clone()
        };
        assert!(
            matches!(&ops(&last)[0], PatchOp::Add { pos: None, sel, .. } if sel == "x1:resource-lists/x1:list[@name=\"friends\"]")
        );
        let between_text = Edit {
            placement: None,
            ..e.clone()
        };
        assert_eq!(
            patch_ops(&between_text, Some(RL), &mut Prefixes::default()),
            Err(PatchError::Incomplete)
        );
        assert!(
            matches!(&ops(&first)[0], PatchOp::Add { pos: Some(AddPos::Prepend), sel, .. } if sel == "x1:resource-lists/x1:list[@name=\"friends\"]")
        );
    }

    // RFC 5261 §4.4, §4.5: replaced and removed elements by position; attributes by name.
    #[test]
    fn replaced_removed_and_attributes() {
        let e = edit(
            EditKind::PutElement,
            "resource-lists/list[2]",
            Some("<list/>"),
            Some(2),
            false,
        );
        assert!(
            matches!(&ops(&e)[0], PatchOp::Replace { sel, attribute: false, .. } if sel == "x1:resource-lists/*[2]")
        );
        let d = edit(
            EditKind::DeleteElement,
            "resource-lists/*[1]/entry[3]",
            None,
            Some(3),
            false,
        );
        assert_eq!(
            ops(&d),
            vec![PatchOp::Remove {
                sel: "x1:resource-lists/*[1]/*[3]".into(),
                ws_before: false,
            }]
        );
        let a = edit(
            EditKind::PutAttribute,
            "resource-lists/list/@name",
            Some("f\"q"),
            None,
            true,
        );
        assert_eq!(
            ops(&a),
            vec![PatchOp::Add {
                sel: "x1:resource-lists/x1:list".into(),
                pos: None,
                attribute: Some("name".into()),
                content: "f\"q".into()
            }]
        );
        let r = Edit {
            created: false,
            ..a.clone()
        };
        assert!(
            matches!(&ops(&r)[0], PatchOp::Replace { sel, attribute: true, .. } if sel == "x1:resource-lists/x1:list/@name")
        );
        let da = edit(
            EditKind::DeleteAttribute,
            "resource-lists/list/@name",
            None,
            None,
            false,
        );
        assert_eq!(
            ops(&da),
            vec![PatchOp::Remove {
                sel: "x1:resource-lists/x1:list/@name".into(),
                ws_before: false,
            }]
        );
    }

    #[test]
    fn what_has_no_patch() {
        let root = edit(
            EditKind::DeleteElement,
            "resource-lists",
            None,
            Some(1),
            false,
        );
        assert_eq!(
            patch_ops(&root, Some(RL), &mut Prefixes::default()),
            Err(PatchError::Root)
        );
        let both = edit(
            EditKind::DeleteElement,
            "resource-lists/list[@name=\"a'b\\\"\"]/entry",
            None,
            Some(1),
            false,
        );
        assert!(patch_ops(&both, Some(RL), &mut Prefixes::default()).is_err());
        let no_value = edit(
            EditKind::PutElement,
            "resource-lists/list",
            None,
            Some(1),
            true,
        );
        assert_eq!(
            patch_ops(&no_value, Some(RL), &mut Prefixes::default()),
            Err(PatchError::Incomplete)
        );
    }
}
