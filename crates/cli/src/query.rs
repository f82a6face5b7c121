//! `opentrail query "SQL"`: runs a CloudTrail Lake query on a running OpenTrail (or CloudTrail
//! Lake itself), waits for it, and prints the rows as a table, CSV or JSON lines.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::ValueEnum;
use serde_json::{Map, Value, json};

use crate::client::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The SQL statement (CloudTrail Lake's dialect: the table is an event data store ID).
    pub statement: String,
    /// Where the server is (default: AWS_ENDPOINT_URL_CLOUDTRAIL, AWS_ENDPOINT_URL, or
    /// http://127.0.0.1:4590).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Region (default: AWS_REGION, AWS_DEFAULT_REGION, or us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
}

/// Rows of values, `None` for NULL.
type Rows = Vec<Vec<Option<String>>>;

/// The rows of a finished query, with the column names.
fn fetch(connection: &Connection, query_id: &str) -> Result<(Vec<String>, Rows)> {
    let mut columns: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"QueryId": query_id, "MaxQueryResults": 1000});
        if let Some(token) = &token {
            body["NextToken"] = json!(token);
        }
        let page = connection.call("GetQueryResults", &body)?;
        for row in page["QueryResultRows"].as_array().into_iter().flatten() {
            let cells: Vec<(String, String)> = row
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .flat_map(Map::iter)
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            for (name, _) in &cells {
                if !columns.contains(name) {
                    columns.push(name.clone());
                }
            }
            rows.push(cells);
        }
        token = page["NextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let rows = rows
        .into_iter()
        .map(|cells| columns.iter().map(|c| cells.iter().find(|(k, _)| k == c).map(|(_, v)| v.clone())).collect())
        .collect();
    Ok((columns, rows))
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn print(format: Format, columns: &[String], rows: &[Vec<Option<String>>], out: &mut impl Write) -> Result<()> {
    match format {
        Format::Json => {
            for row in rows {
                let object: Map<String, Value> = columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.clone(), v.clone().map_or(Value::Null, Value::String)))
                    .collect();
                writeln!(out, "{}", Value::Object(object))?;
            }
        }
        Format::Csv => {
            writeln!(out, "{}", columns.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","))?;
            for row in rows {
                let fields: Vec<String> = row.iter().map(|v| csv_field(v.as_deref().unwrap_or(""))).collect();
                writeln!(out, "{}", fields.join(","))?;
            }
        }
        Format::Table => {
            let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    rows.iter()
                        .map(|r| shown(&r[i]).chars().count())
                        .chain([c.chars().count()])
                        .max()
                        .unwrap_or(0)
                        .min(60)
                })
                .collect();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{:<w$}", c.chars().take(*w).collect::<String>(), w = *w))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            writeln!(out, "{}", line(columns.to_vec()))?;
            for row in rows {
                writeln!(out, "{}", line(row.iter().map(shown).collect()))?;
            }
            writeln!(out, "({} rows)", rows.len())?;
        }
    }
    Ok(())
}

pub fn run(args: QueryArgs) -> Result<()> {
    let connection = Connection::from_env(args.endpoint_url.clone(), args.region.clone())?;
    let started = connection.call("StartQuery", &json!({"QueryStatement": args.statement}))?;
    let Some(query_id) = started["QueryId"].as_str().map(str::to_owned) else {
        bail!("StartQuery answered without a QueryId")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut pause = Duration::from_millis(20);
    loop {
        let described = connection.call("DescribeQuery", &json!({"QueryId": query_id}))?;
        match described["QueryStatus"].as_str().unwrap_or_default() {
            "FINISHED" => break,
            "QUEUED" | "RUNNING" if std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            "QUEUED" | "RUNNING" => {
                connection.call("CancelQuery", &json!({"QueryId": query_id}))?;
                bail!("query {query_id} did not finish within {} seconds; cancelled", args.timeout);
            }
            status => bail!("query {query_id} {status}: {}", described["ErrorMessage"].as_str().unwrap_or_default()),
        }
    }
    let (columns, rows) = fetch(&connection, &query_id)?;
    print(args.format, &columns, &rows, &mut std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_table_output() {
        let columns = vec!["eventName".to_string(), "n".to_string()];
        let rows = vec![vec![Some("Create,Trail".to_string()), Some("3".to_string())], vec![None, Some("1".into())]];
        let mut csv = Vec::new();
        print(Format::Csv, &columns, &rows, &mut csv).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), "eventName,n\n\"Create,Trail\",3\n,1\n");
        let mut table = Vec::new();
        print(Format::Table, &columns, &rows, &mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("NULL") && table.ends_with("(2 rows)\n"), "{table}");
        let mut json_lines = Vec::new();
        print(Format::Json, &columns, &rows, &mut json_lines).unwrap();
        assert!(String::from_utf8(json_lines).unwrap().starts_with(r#"{"eventName":"Create,Trail","n":"3"}"#));
    }
}
