//! Input values from the command line (`name=value`, `name=[v1, v2]`), CSV and JSON
//! Lines, typed by the program's declared inputs.

use anyhow::{Context, anyhow, bail};
use qvm_api::request::{Input, InputField, InputValue, Real};
use qvm_package::manifest::Field;

/// Parses `NAME=VALUE` arguments.
pub fn parse_args(decl: &[Field], given: &[String]) -> anyhow::Result<Input> {
    given
        .iter()
        .map(|g| {
            let (name, text) = g
                .split_once('=')
                .ok_or_else(|| anyhow!("`{g}`: write NAME=VALUE"))?;
            parse_field(decl, name.trim(), text)
        })
        .collect()
}

fn declared<'a>(decl: &'a [Field], name: &str) -> anyhow::Result<&'a Field> {
    decl.iter()
        .find(|d| d.name == name)
        .ok_or_else(|| anyhow!("the program has no input `{name}`"))
}

/// One input from its text: a scalar, or a list in brackets (or separated by `;`).
pub fn parse_field(decl: &[Field], name: &str, text: &str) -> anyhow::Result<InputField> {
    let d = declared(decl, name)?;
    let text = text.trim();
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let items: Vec<&str> = inner
        .split([',', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let value = typed(d, &items).with_context(|| format!("input `{name}`"))?;
    Ok(InputField {
        name: name.to_string(),
        value,
    })
}

fn typed(d: &Field, items: &[&str]) -> anyhow::Result<InputValue> {
    let parse = |s: &&str| -> anyhow::Result<InputValue> {
        Ok(match d.ty.as_str() {
            "bool" => InputValue::Boolean(
                s.parse()
                    .with_context(|| format!("`{s}` is not true or false"))?,
            ),
            "int" => InputValue::Int(
                s.parse()
                    .with_context(|| format!("`{s}` is not an integer"))?,
            ),
            _ => InputValue::Real(Real(
                s.parse()
                    .with_context(|| format!("`{s}` is not a number"))?,
            )),
        })
    };
    let values: Vec<InputValue> = items.iter().map(parse).collect::<anyhow::Result<_>>()?;
    if !d.vector {
        return match values.as_slice() {
            [one] => Ok(one.clone()),
            _ => bail!("one value expected"),
        };
    }
    Ok(match d.ty.as_str() {
        "bool" => InputValue::Booleans(
            values
                .iter()
                .filter_map(|v| match v {
                    InputValue::Boolean(b) => Some(*b),
                    _ => None,
                })
                .collect(),
        ),
        "int" => InputValue::Ints(
            values
                .iter()
                .filter_map(|v| match v {
                    InputValue::Int(i) => Some(*i),
                    _ => None,
                })
                .collect(),
        ),
        _ => InputValue::Reals(
            values
                .iter()
                .filter_map(|v| match v {
                    InputValue::Real(r) => Some(*r),
                    _ => None,
                })
                .collect(),
        ),
    })
}

/// A CSV file: a header of input names, then one row per evaluation; a vector's elements
/// are separated by `;` in its cell.
pub fn parse_csv(decl: &[Field], text: &str) -> anyhow::Result<Vec<Input>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| anyhow!("the CSV file is empty"))?
        .split(',')
        .map(str::trim)
        .collect();
    lines
        .enumerate()
        .map(|(i, line)| {
            let cells: Vec<&str> = line.split(',').collect();
            if cells.len() != header.len() {
                bail!(
                    "row {}: {} cells, {} columns",
                    i + 1,
                    cells.len(),
                    header.len()
                );
            }
            header
                .iter()
                .zip(cells)
                .map(|(name, cell)| parse_field(decl, name, cell))
                .collect::<anyhow::Result<Input>>()
                .with_context(|| format!("row {}", i + 1))
        })
        .collect()
}

/// A JSON Lines file: one object per evaluation, `{"name": value or [values]}`.
pub fn parse_jsonl(decl: &[Field], text: &str) -> anyhow::Result<Vec<Input>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let obj: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line).with_context(|| format!("line {}", i + 1))?;
            obj.iter()
                .map(|(name, v)| {
                    let text = match v {
                        serde_json::Value::Array(a) => a
                            .iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                        other => other.to_string(),
                    };
                    parse_field(decl, name, &text)
                })
                .collect::<anyhow::Result<Input>>()
                .with_context(|| format!("line {}", i + 1))
        })
        .collect()
}
