//! The dialect bridge: CloudTrail Lake's Trino-flavoured SQL in, a statement DataFusion plans
//! out, plus what the answer needs from the original text.
//!
//! - Only one `SELECT` statement (with `WITH`, set operations, joins, subqueries) is accepted;
//!   anything that could change data is refused before any planning.
//! - Tables are event data stores named by ID (or quoted ARN); each is resolved against the
//!   caller's own stores, so another account's store is simply not found.
//! - Trino resolves identifiers case-insensitively, quoted or not: every identifier is lower
//!   cased to match the lower-case schema (string literals are untouched).
//! - Result columns get Trino's names: the alias or column as written, the last part of a
//!   struct path (`userIdentity.principalid` -> `principalid`), `_colN` for other expressions.
//! - `CROSS JOIN UNNEST(array) AS t(x)` (Trino's lateral expansion) becomes a derived table that
//!   unnests in its select list, which the engine plans.

use std::ops::ControlFlow;

use sqlparser::ast::{
    AccessExpr, Expr, Ident, Join, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, Query, Select, SelectItem,
    SetExpr, Statement, TableFactor, Value, Visit, VisitMut, Visitor, VisitorMut, visit_expressions_mut,
    visit_relations_mut,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// The deepest expression nesting a statement may have (`a + b + c` is two levels deep),
/// checked on the parsed statement before planning: the planner and optimizer recurse once per
/// level (a statement is at most 10,000 characters, which bounds its size).
pub const MAX_EXPRESSION_DEPTH: usize = 128;

/// Stack of each query thread: planning, optimizing and evaluating recurse per expression
/// level, and debug builds use large frames, so this leaves a wide margin over what
/// [`MAX_EXPRESSION_DEPTH`] needs. Only touched pages cost memory. Here, beside the depth it
/// pays for, so that the bridge's own tests check the stack the query threads get.
pub const QUERY_STACK_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// `InvalidQueryStatementException`.
    #[error("{0}")]
    InvalidStatement(String),
    /// `EventDataStoreNotFoundException`: the named table is none of the caller's stores.
    #[error("{0}")]
    UnknownTable(String),
}

/// A statement ready for DataFusion.
#[derive(Debug, Clone)]
pub struct BridgedQuery {
    pub statement: Statement,
    /// The event data stores the statement reads (IDs, each once, in order of appearance).
    pub store_ids: Vec<String>,
    /// Result column names as Trino gives them; `None` when the select list has a `*` (the
    /// engine's names are used, spelled canonically).
    pub column_names: Option<Vec<String>>,
}

fn invalid(message: impl Into<String>) -> BridgeError {
    BridgeError::InvalidStatement(message.into())
}

/// Byte offset of each token's start; tokens cover the text without gaps.
fn token_offsets(sql: &str, tokens: &[TokenWithSpan]) -> Vec<usize> {
    // Locations are 1-based (line, column in characters): map them back to bytes.
    let mut lines: Vec<Vec<usize>> = vec![Vec::new()];
    for (offset, character) in sql.char_indices() {
        lines.last_mut().expect("one line at least").push(offset);
        if character == '\n' {
            lines.push(Vec::new());
        }
    }
    tokens
        .iter()
        .map(|token| {
            let (line, column) = (token.span.start.line as usize, token.span.start.column as usize);
            lines
                .get(line.saturating_sub(1))
                .and_then(|columns| columns.get(column.saturating_sub(1)))
                .copied()
                .unwrap_or(sql.len())
        })
        .collect()
}

/// The statement twice, from sqlparser's own tokens so that literals, quoted names and
/// comments are copied exactly as written (a doubled quote stays doubled): once with bare
/// event data store IDs quoted, once also with every identifier lower-cased, quoted or not.
fn prepare(sql: &str) -> Result<(String, String), BridgeError> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|error| invalid(format!("Query statement is not valid SQL: {error}")))?;
    let offsets = token_offsets(sql, &tokens);
    let (mut quoted, mut lowered) = (String::with_capacity(sql.len() + 8), String::with_capacity(sql.len() + 8));
    // Unquoted code (words, numbers, operators) is gathered into runs: an ID such as
    // `0b2c0d4e-1111-...` is several tokens to any SQL tokenizer, but one run of code.
    let mut code = String::new();
    let flush = |code: &mut String, quoted: &mut String, lowered: &mut String| {
        let text = quote_bare_ids(code);
        lowered.push_str(&text.to_lowercase());
        quoted.push_str(&text);
        code.clear();
    };
    for (index, token) in tokens.iter().enumerate() {
        let end = offsets.get(index + 1).copied().unwrap_or(sql.len());
        let text = &sql[offsets[index].min(end)..end];
        match &token.token {
            Token::Word(word) if word.quote_style.is_none() => code.push_str(text),
            Token::Word(_) => {
                flush(&mut code, &mut quoted, &mut lowered);
                quoted.push_str(text);
                lowered.push_str(&text.to_lowercase());
            }
            Token::Number(..) | Token::Minus | Token::Period => code.push_str(text),
            _ => {
                flush(&mut code, &mut quoted, &mut lowered);
                quoted.push_str(text);
                lowered.push_str(text);
            }
        }
    }
    flush(&mut code, &mut quoted, &mut lowered);
    Ok((quoted, lowered))
}

fn is_uuid_at(bytes: &[u8], start: usize) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut position = start;
    for (index, length) in GROUPS.iter().enumerate() {
        for _ in 0..*length {
            if !bytes.get(position).is_some_and(u8::is_ascii_hexdigit) {
                return false;
            }
            position += 1;
        }
        if index < GROUPS.len() - 1 {
            if bytes.get(position) != Some(&b'-') {
                return false;
            }
            position += 1;
        }
    }
    !bytes.get(position).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// Event data store IDs are written bare (`FROM 0b2c0d4e-...`), which no SQL tokenizer reads as
/// one name: quote every bare UUID in a run of unquoted code.
fn quote_bare_ids(code: &str) -> String {
    let bytes = code.as_bytes();
    let mut out = String::with_capacity(code.len() + 2);
    let (mut index, mut copied) = (0, 0);
    while index < bytes.len() {
        let at_word_start = index == 0 || !(bytes[index - 1].is_ascii_alphanumeric() || bytes[index - 1] == b'_');
        if at_word_start && is_uuid_at(bytes, index) {
            out.push_str(&code[copied..index]);
            out.push('"');
            out.push_str(&code[index..index + 36]);
            out.push('"');
            index += 36;
            copied = index;
            continue;
        }
        index += 1;
    }
    out.push_str(&code[copied..]);
    out
}

fn parse_one(sql: &str) -> Result<Statement, BridgeError> {
    let mut statements = Parser::parse_sql(&GenericDialect {}, sql)
        .map_err(|error| invalid(format!("Query statement is not valid SQL: {error}")))?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(invalid("The query statement is empty.")),
        _ => Err(invalid("Only one SQL statement can be run at a time.")),
    }
}

/// Refuses everything but a read-only query, also DML hidden inside one.
fn ensure_read_only(statement: &Statement) -> Result<(), BridgeError> {
    let Statement::Query(_) = statement else {
        let kind = statement.to_string().split_whitespace().next().unwrap_or_default().to_uppercase();
        return Err(invalid(format!(
            "Only SELECT statements are supported; {kind} statements cannot be run on an event data store."
        )));
    };
    struct NestedStatements(usize);
    impl Visitor for NestedStatements {
        type Break = ();
        fn pre_visit_statement(&mut self, _: &Statement) -> ControlFlow<()> {
            self.0 += 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            match query.body.as_ref() {
                SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    let mut nested = NestedStatements(0);
    if statement.visit(&mut nested).is_break() || nested.0 > 1 {
        return Err(invalid("Only SELECT statements are supported; the query must not change data."));
    }
    Ok(())
}

/// Refuses expressions nested deeper than [`MAX_EXPRESSION_DEPTH`] before anything recurses
/// over them for planning (the parser builds `1 + 1 + ...` without recursing, the planner
/// does not).
fn ensure_shallow(statement: &Statement) -> Result<(), BridgeError> {
    struct Depth {
        current: usize,
    }
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.current += 1;
            if self.current > MAX_EXPRESSION_DEPTH { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        }
        fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.current -= 1;
            ControlFlow::Continue(())
        }
    }
    if statement.visit(&mut Depth { current: 0 }).is_break() {
        return Err(invalid(format!(
            "Query statement is too complex: an expression is nested more than {MAX_EXPRESSION_DEPTH} levels deep \
             (the limit). Split long chains of operators, or use IN (...) for many alternatives."
        )));
    }
    Ok(())
}

/// Names that `WITH` defines, which are not event data stores.
fn cte_names(statement: &Statement) -> Vec<String> {
    struct Ctes(Vec<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                self.0.extend(with.cte_tables.iter().map(|cte| cte.alias.name.value.to_lowercase()));
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(Vec::new());
    let _ = statement.visit(&mut ctes);
    ctes.0
}

fn first_select(body: &SetExpr) -> Option<&sqlparser::ast::Select> {
    match body {
        SetExpr::Select(select) => Some(select),
        SetExpr::Query(query) => first_select(&query.body),
        SetExpr::SetOperation { left, .. } => first_select(left),
        _ => None,
    }
}

/// Trino's result column names for the statement's select list.
fn result_names(statement: &Statement) -> Option<Vec<String>> {
    let Statement::Query(query) = statement else { return None };
    let select = first_select(&query.body)?;
    let mut names = Vec::with_capacity(select.projection.len());
    for (index, item) in select.projection.iter().enumerate() {
        let name = match item {
            SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
            SelectItem::UnnamedExpr(Expr::Identifier(ident)) => ident.value.clone(),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last()?.value.clone(),
            SelectItem::UnnamedExpr(_) => format!("_col{index}"),
            _ => return None,
        };
        names.push(name);
    }
    Some(names)
}

/// Trino reads a field of any struct-valued expression (`element_at(resources, 1).arn`); the
/// engine only of columns, so such accesses become `get_field(expression, 'field')`.
fn field_access_on_expressions(statement: &mut Statement) -> Result<(), BridgeError> {
    let rewritten = visit_expressions_mut(statement, |expr| {
        let Expr::CompoundFieldAccess { root, access_chain } = expr else { return ControlFlow::Continue(()) };
        if matches!(**root, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            return ControlFlow::Continue(());
        }
        let mut text = root.to_string();
        for access in access_chain.iter() {
            match access {
                AccessExpr::Dot(Expr::Identifier(field)) => {
                    text = format!("get_field({text}, '{}')", field.value.replace('\'', "''"));
                }
                _ => return ControlFlow::Continue(()),
            }
        }
        match Parser::new(&GenericDialect {}).try_with_sql(&text).and_then(|mut parser| parser.parse_expr()) {
            Ok(replacement) => {
                *expr = replacement;
                ControlFlow::Continue(())
            }
            Err(error) => ControlFlow::Break(invalid(format!("Query statement is not valid SQL: {error}"))),
        }
    });
    match rewritten {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn parse_table_factor(text: &str) -> Result<TableFactor, BridgeError> {
    Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_table_factor())
        .map_err(|error| invalid(format!("Query statement is not valid SQL: {error}")))
}

/// Whether a join adds every combination (`CROSS JOIN`, or an inner join `ON true`).
fn is_cross(operator: &JoinOperator) -> bool {
    match operator {
        JoinOperator::CrossJoin(JoinConstraint::None) => true,
        JoinOperator::Join(JoinConstraint::On(on)) | JoinOperator::Inner(JoinConstraint::On(on)) => {
            matches!(on, Expr::Value(value) if value.value == Value::Boolean(true))
        }
        _ => false,
    }
}

/// `base` joined with `UNNEST(...) AS t(columns)`, as one derived table named like `base`.
/// Names of unnest aliases whose columns are then referred to unqualified go to `aliases`.
fn unnest_into(base: &TableFactor, unnest: TableFactor, aliases: &mut Vec<String>) -> Result<TableFactor, BridgeError> {
    let TableFactor::UNNEST { alias, array_exprs, with_offset, with_ordinality, .. } = unnest else {
        return Err(invalid("UNNEST must directly follow the table whose arrays it expands."));
    };
    if with_offset || with_ordinality {
        return Err(invalid("UNNEST ... WITH ORDINALITY is not supported; use row_number() over the expanded rows."));
    }
    let name = match base {
        TableFactor::Table { alias: Some(alias), .. } | TableFactor::Derived { alias: Some(alias), .. } => {
            alias.name.to_string()
        }
        TableFactor::Table { name, alias: None, .. } => name.to_string(),
        _ => return Err(invalid("UNNEST must follow the table (or aliased subquery) whose arrays it expands.")),
    };
    let arrays: Vec<String> = array_exprs.iter().map(ToString::to_string).collect();
    let columns: Vec<String> = alias.iter().flat_map(|a| &a.columns).map(|column| column.name.to_string()).collect();
    if let Some(alias) = alias.as_ref().filter(|a| !a.columns.is_empty()) {
        aliases.push(alias.name.value.clone());
    }
    let text = match (arrays.as_slice(), columns.len()) {
        // Arrays side by side, as Trino zips them (the shorter padded with NULL).
        (arrays, count) if count == arrays.len() => {
            let items: Vec<String> =
                arrays.iter().zip(&columns).map(|(array, column)| format!("unnest({array}) AS {column}")).collect();
            format!("(SELECT {name}.*, {} FROM {base}) AS {name}", items.join(", "))
        }
        // No column names: the element is named after the alias.
        ([array], 0) => {
            let column = alias.as_ref().map_or("unnest".to_string(), |a| a.name.to_string());
            format!("(SELECT {name}.*, unnest({array}) AS {column} FROM {base}) AS {name}")
        }
        // Trino spreads an array of rows over a name per field; here the row stays one value.
        ([_], _) => {
            return Err(invalid(
                "UNNEST of one array names one column here: write UNNEST(array) AS t(r) and read the fields as r.field.",
            ));
        }
        (arrays, count) => {
            return Err(invalid(format!(
                "UNNEST expands {} arrays but its alias names {count} columns.",
                arrays.len()
            )));
        }
    };
    parse_table_factor(&text)
}

fn unnest_in_select(select: &mut Select, aliases: &mut Vec<String>) -> Result<(), BridgeError> {
    let is_unnest = |factor: &TableFactor| matches!(factor, TableFactor::UNNEST { .. });
    // `FROM t, UNNEST(...) AS u(x)`: the later items join the first one.
    if select.from.len() > 1 && select.from[1..].iter().any(|item| is_unnest(&item.relation)) {
        if !select.from[1..].iter().all(|item| is_unnest(&item.relation) && item.joins.is_empty()) {
            return Err(invalid("UNNEST must directly follow the table whose arrays it expands."));
        }
        let later: Vec<_> = select.from.drain(1..).collect();
        select.from[0].joins.extend(later.into_iter().map(|item| Join {
            relation: item.relation,
            global: false,
            join_operator: JoinOperator::CrossJoin(JoinConstraint::None),
        }));
    }
    for item in &mut select.from {
        while let Some(position) = item.joins.iter().position(|join| is_unnest(&join.relation)) {
            if position != 0 || is_unnest(&item.relation) {
                return Err(invalid("UNNEST must directly follow the table whose arrays it expands."));
            }
            let join = item.joins.remove(0);
            if !is_cross(&join.join_operator) {
                return Err(invalid("Only CROSS JOIN UNNEST (or a comma, or JOIN ... ON true) is supported."));
            }
            item.relation = unnest_into(&item.relation, join.relation, aliases)?;
        }
    }
    Ok(())
}

fn unnest_in_set(body: &mut SetExpr, aliases: &mut Vec<String>) -> Result<(), BridgeError> {
    match body {
        SetExpr::Select(select) => unnest_in_select(select, aliases),
        SetExpr::SetOperation { left, right, .. } => {
            unnest_in_set(left, aliases)?;
            unnest_in_set(right, aliases)
        }
        _ => Ok(()),
    }
}

/// CloudTrail Lake keeps some yes/no fields as text (`sessionCredentialFromConsole` holds
/// `"true"`), and published queries compare them with `true`. A column compared (`=`, `<>`)
/// with a boolean literal is compared as text with the literal's text, which means the same
/// for boolean columns (`readOnly = true`) and for text ones.
fn booleans_compared_as_text(statement: &mut Statement) -> Result<(), BridgeError> {
    use sqlparser::ast::{BinaryOperator, CastKind, DataType as SqlType};
    let _ = visit_expressions_mut(statement, |expr| {
        let Expr::BinaryOp { left, op: BinaryOperator::Eq | BinaryOperator::NotEq, right } = expr else {
            return ControlFlow::<()>::Continue(());
        };
        let is_column = |e: &Expr| matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
        let literal = |e: &Expr| match e {
            Expr::Value(value) => match value.value {
                Value::Boolean(b) => Some(b),
                _ => None,
            },
            _ => None,
        };
        let (column, literal_side, value) = match (literal(left), literal(right)) {
            (None, Some(value)) if is_column(left) => (left, right, value),
            (Some(value), None) if is_column(right) => (right, left, value),
            _ => return ControlFlow::Continue(()),
        };
        let as_text = Expr::Cast {
            kind: CastKind::Cast,
            expr: Box::new(std::mem::replace(column.as_mut(), Expr::value(Value::Null))),
            data_type: SqlType::Varchar(None),
            array: false,
            format: None,
        };
        **column = as_text;
        **literal_side = Expr::value(Value::SingleQuotedString(value.to_string()));
        ControlFlow::Continue(())
    });
    Ok(())
}

/// Trino's lateral `CROSS JOIN UNNEST(array) AS t(x)` (or `, UNNEST(...)`) becomes
/// `(SELECT a.*, unnest(array) AS x FROM table AS a) AS a`, and `t.x` becomes `x`.
fn lateral_unnest(statement: &mut Statement) -> Result<(), BridgeError> {
    struct Lateral(Vec<String>);
    impl VisitorMut for Lateral {
        type Break = BridgeError;
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<BridgeError> {
            match unnest_in_set(&mut query.body, &mut self.0) {
                Ok(()) => ControlFlow::Continue(()),
                Err(error) => ControlFlow::Break(error),
            }
        }
    }
    let mut lateral = Lateral(Vec::new());
    if let ControlFlow::Break(error) = VisitMut::visit(statement, &mut lateral) {
        return Err(error);
    }
    let aliases = lateral.0;
    if aliases.is_empty() {
        return Ok(());
    }
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() > 1
            && aliases.contains(&parts[0].value)
        {
            parts.remove(0);
            if parts.len() == 1 {
                *expr = Expr::Identifier(parts.remove(0));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(())
}

/// Bridges `sql`; `resolve` maps a table name (an ID or ARN, as written) to the ID of one of
/// the caller's event data stores. A statement of 10,000 characters may be a chain of
/// thousands of operators, which parsing and dropping walk recursively: call this on a thread
/// with a query thread's stack ([`QUERY_STACK_BYTES`]).
pub fn bridge(sql: &str, resolve: impl Fn(&str) -> Option<String>) -> Result<BridgedQuery, BridgeError> {
    if sql.trim().is_empty() {
        return Err(invalid("The query statement is empty."));
    }
    let (quoted, lowered) = prepare(sql)?;
    let original = parse_one(&quoted)?;
    ensure_shallow(&original)?;
    ensure_read_only(&original)?;
    let column_names = result_names(&original);

    let mut statement = parse_one(&lowered)?;
    let ctes = cte_names(&statement);
    let mut store_ids: Vec<String> = Vec::new();
    let resolved = visit_relations_mut(&mut statement, |name: &mut ObjectName| {
        let parts: Vec<&str> = name
            .0
            .iter()
            .map(|part| match part {
                ObjectNamePart::Identifier(ident) => ident.value.as_str(),
                ObjectNamePart::Function(function) => function.name.value.as_str(),
            })
            .collect();
        let written = parts.join(".");
        if parts.len() == 1 && ctes.contains(&written) {
            return ControlFlow::Continue(());
        }
        match resolve(&written) {
            Some(id) => {
                if !store_ids.contains(&id) {
                    store_ids.push(id.clone());
                }
                *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::with_quote('"', id))]);
                ControlFlow::Continue(())
            }
            None => ControlFlow::Break(BridgeError::UnknownTable(format!(
                "Event data store {written} was not found. The table in FROM must be the ID (or ARN) of one of your event data stores."
            ))),
        }
    });
    if let ControlFlow::Break(error) = resolved {
        return Err(error);
    }
    lateral_unnest(&mut statement)?;
    field_access_on_expressions(&mut statement)?;
    booleans_compared_as_text(&mut statement)?;
    if store_ids.is_empty() {
        return Err(invalid("The query must read at least one event data store (FROM <event data store ID>)."));
    }
    Ok(BridgedQuery { statement, store_ids, column_names })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b2c0d4e-1111-4222-8333-444455556666";

    fn resolve(name: &str) -> Option<String> {
        let id = name.rsplit('/').next()?;
        (id == ID).then(|| ID.to_string())
    }

    #[test]
    fn select_is_rewritten_with_lower_case_identifiers_and_trino_names() {
        let sql = format!(
            "SELECT userIdentity.principalId, eventName AS \"Name\", COUNT(*), \"eventSource\" FROM {ID} \
             WHERE eventName = 'CreateBucket' GROUP BY 1, 2, 4"
        );
        let bridged = bridge(&sql, resolve).unwrap();
        assert_eq!(bridged.store_ids, vec![ID.to_string()]);
        assert_eq!(
            bridged.column_names.unwrap(),
            vec!["principalId".to_string(), "Name".into(), "_col2".into(), "eventSource".into()]
        );
        let text = bridged.statement.to_string();
        assert!(text.contains("useridentity.principalid"), "{text}");
        assert!(text.contains("'CreateBucket'"), "literals keep their case: {text}");
        assert!(text.contains(&format!("\"{ID}\"")), "{text}");
    }

    #[test]
    fn arns_ctes_and_unions_resolve() {
        let arn = format!("arn:aws:cloudtrail:us-east-1:123456789012:eventdatastore/{ID}");
        let sql = format!(
            "WITH recent AS (SELECT eventID FROM \"{arn}\") SELECT eventID FROM recent UNION ALL SELECT eventID FROM {ID}"
        );
        let bridged = bridge(&sql, resolve).unwrap();
        assert_eq!(bridged.store_ids, vec![ID.to_string()]);
        assert_eq!(bridged.column_names.unwrap(), vec!["eventID".to_string()]);
    }

    #[test]
    fn fields_of_expressions_become_get_field() {
        let sql = format!("SELECT element_at(resources, 1).arn FROM {ID}");
        let text = bridge(&sql, resolve).unwrap().statement.to_string();
        assert!(text.contains("get_field(element_at(resources, 1), 'arn')"), "{text}");
    }

    #[test]
    fn lateral_unnest_becomes_a_derived_table() {
        let sql = format!("SELECT e.eventName, t.r.arn FROM {ID} AS e CROSS JOIN UNNEST(e.resources) AS t(r)");
        let text = bridge(&sql, resolve).unwrap().statement.to_string();
        assert_eq!(
            text,
            format!("SELECT e.eventname, r.arn FROM (SELECT e.*, unnest(e.resources) AS r FROM \"{ID}\" AS e) AS e")
        );
        let sql = format!("SELECT x FROM {ID}, UNNEST(resources) AS t(x) WHERE t.x IS NOT NULL");
        let text = bridge(&sql, resolve).unwrap().statement.to_string();
        assert!(
            text.contains(&format!("(SELECT \"{ID}\".*, unnest(resources) AS x FROM \"{ID}\") AS \"{ID}\"")),
            "{text}"
        );
        assert!(text.ends_with("WHERE x IS NOT NULL"), "{text}");
        for refused in [
            format!("SELECT 1 FROM {ID} LEFT JOIN UNNEST(resources) AS t(x) ON x IS NULL"),
            format!("SELECT 1 FROM {ID} CROSS JOIN UNNEST(resources) WITH ORDINALITY AS t(x, n)"),
            format!("SELECT 1 FROM {ID} CROSS JOIN UNNEST(resources, resources) AS t(x)"),
        ] {
            assert!(matches!(bridge(&refused, resolve), Err(BridgeError::InvalidStatement(_))), "{refused}");
        }
    }

    #[test]
    fn anything_but_select_is_refused() {
        for sql in [
            format!("DELETE FROM {ID}"),
            format!("DROP TABLE {ID}"),
            format!("INSERT INTO {ID} SELECT * FROM {ID}"),
            format!("CREATE TABLE x AS SELECT * FROM {ID}"),
            format!("SELECT * FROM {ID}; SELECT 1"),
            "SELEC eventName".to_string(),
            "   ".to_string(),
            "SELECT 1".to_string(),
        ] {
            assert!(matches!(bridge(&sql, resolve), Err(BridgeError::InvalidStatement(_))), "{sql}");
        }
    }

    #[test]
    fn bare_ids_are_quoted_outside_literals_and_comments() {
        let sql = format!("SELECT '{ID}' -- {ID}\nFROM {ID} WHERE x = \"{ID}\"");
        let (quoted, _) = prepare(&sql).unwrap();
        assert_eq!(quoted, format!("SELECT '{ID}' -- {ID}\nFROM \"{ID}\" WHERE x = \"{ID}\""));
        assert_eq!(prepare("SELECT a1b2").unwrap().0, "SELECT a1b2");
    }

    #[test]
    fn doubled_quotes_and_literals_are_kept_as_written() {
        let sql = format!("SELECT 'it''s', \"Odd\"\"Name\" FROM {ID} /* It's */ WHERE eventName = 'Don''t' -- x'\n");
        let (_, lowered) = prepare(&sql).unwrap();
        assert_eq!(
            lowered,
            format!("select 'it''s', \"odd\"\"name\" from \"{ID}\" /* It's */ where eventname = 'Don''t' -- x'\n")
        );
        let bridged =
            bridge(&format!("SELECT eventName FROM {ID} WHERE eventName <> 'it''s' AND 'Ünïcode' <> 'x'"), resolve)
                .unwrap();
        assert!(bridged.statement.to_string().contains("'it''s'"), "{}", bridged.statement);
    }

    /// Bridges on a thread with a query thread's stack, as `QueryService` does.
    fn bridge_on_a_query_thread(sql: String) -> Result<(), BridgeError> {
        std::thread::Builder::new()
            .stack_size(QUERY_STACK_BYTES)
            .spawn(move || bridge(&sql, resolve).map(drop))
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn deep_expressions_are_refused_before_planning() {
        let terms = |n: usize| vec!["1"; n].join("+");
        let allowed = format!("SELECT {} FROM {ID}", terms(MAX_EXPRESSION_DEPTH - 4));
        assert_eq!(bridge_on_a_query_thread(allowed), Ok(()));
        let Err(BridgeError::InvalidStatement(message)) =
            bridge_on_a_query_thread(format!("SELECT {} FROM {ID}", terms(1000)))
        else {
            panic!("accepted")
        };
        assert!(message.contains(&format!("more than {MAX_EXPRESSION_DEPTH} levels")), "{message}");
        // The longest statement StartQuery takes, all one chain.
        let longest = format!("SELECT {} FROM {ID}", terms(4_980));
        assert!(matches!(bridge_on_a_query_thread(longest), Err(BridgeError::InvalidStatement(_))));
    }

    #[test]
    fn unknown_tables_are_not_found() {
        let error = bridge("SELECT * FROM 00000000-0000-4000-8000-000000000000", resolve).unwrap_err();
        assert!(matches!(error, BridgeError::UnknownTable(_)));
        let error = bridge("SELECT * FROM information_schema.tables", resolve).unwrap_err();
        assert!(matches!(error, BridgeError::UnknownTable(_)));
    }
}
