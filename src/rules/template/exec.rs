//! Runs a parsed template as Go's `text/template` executes one (exec.go), with
//! `missingkey=zero`, and with bounds Go does not have: steps, output size and
//! nesting, so a hostile template ends in an error.

use std::rc::Rc;

use super::funcs::{self, Env, Ty};
use super::gofmt;
use super::parse::{Arg, Cmd, Control, Node, Pipe, Templates};
use super::value::Value;
use crate::model::labels::go_quote;

/// Most nodes, commands and range iterations one expansion may run.
pub(super) const MAX_STEPS: u64 = 1_000_000;
/// Largest output, and largest string a function may return, in bytes.
pub(super) const MAX_OUTPUT: usize = 1 << 20;
/// Deepest nesting of template calls, blocks and parenthesised pipelines
/// while executing (Go stops template calls at 100000).
pub(super) const MAX_DEPTH: usize = 200;

/// What an error message points at (Go's `state.at`).
#[derive(Clone, Copy)]
enum At<'t> {
    Arg(&'t Arg),
    Cmd(&'t Cmd),
    Template(usize, &'t str, Option<&'t Pipe>),
}

impl At<'_> {
    fn pos(&self) -> usize {
        match self {
            At::Arg(a) => a.pos(),
            At::Cmd(c) => c.pos,
            At::Template(p, ..) => *p,
        }
    }

    fn context(&self) -> String {
        match self {
            At::Arg(a) => a.to_string(),
            At::Cmd(c) => c.to_string(),
            At::Template(_, name, pipe) => match pipe {
                Some(p) => format!("{{{{template {} {p}}}}}", go_quote(name)),
                None => format!("{{{{template {}}}}}", go_quote(name)),
            },
        }
    }
}

enum Flow {
    Normal,
    Break,
    Continue,
}

pub(super) struct Exec<'t, 'e> {
    t: &'t Templates,
    env: &'e Env<'e>,
    name: &'t str,
    vars: Vec<(String, Value)>,
    at: Option<At<'t>>,
    out: String,
    steps: u64,
    depth: usize,
}

type R<T> = Result<T, String>;

pub(super) fn execute(t: &Templates, env: &Env, dot: Value) -> Result<String, String> {
    let mut s = Exec {
        t,
        env,
        name: &t.name,
        vars: vec![("$".to_string(), dot.clone())],
        at: None,
        out: String::new(),
        steps: 0,
        depth: 0,
    };
    s.walk(&dot, &t.root)?;
    Ok(s.out)
}

impl<'t> Exec<'t, '_> {
    fn errorf(&self, msg: impl std::fmt::Display) -> String {
        match &self.at {
            None => format!("template: {}: {msg}", self.name),
            Some(at) => {
                let context = at.context();
                format!(
                    "template: {}: executing {} at <{context}>: {msg}",
                    self.t.location(at.pos()),
                    go_quote(self.name)
                )
            }
        }
    }

    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(self.errorf(format!("template ran more than {MAX_STEPS} steps")));
        }
        Ok(())
    }

    fn deeper(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.errorf(format!("exceeded maximum template depth ({MAX_DEPTH})")));
        }
        Ok(())
    }

    fn write(&mut self, s: &str) -> R<()> {
        if self.out.len() + s.len() > MAX_OUTPUT {
            return Err(self.errorf(format!("template output is over {MAX_OUTPUT} bytes")));
        }
        self.out.push_str(s);
        Ok(())
    }

    fn walk(&mut self, dot: &Value, list: &'t [Node]) -> R<Flow> {
        for node in list {
            self.step()?;
            match node {
                Node::Text(s) => self.write(s)?,
                Node::Action(pipe) => {
                    let v = self.eval_pipeline(dot, pipe)?;
                    if pipe.decl.is_empty() {
                        let text = match v {
                            Value::Nil => "<no value>".to_string(),
                            v => gofmt::v_string(&v),
                        };
                        self.write(&text)?;
                    }
                }
                Node::Control {
                    kind,
                    pipe,
                    list,
                    else_list,
                } => {
                    self.deeper()?;
                    let flow = match kind {
                        Control::Range => self.walk_range(dot, pipe, list, else_list.as_deref())?,
                        _ => {
                            let mark = self.vars.len();
                            let v = self.eval_pipeline(dot, pipe)?;
                            let flow = if v.truth() {
                                let dot = if *kind == Control::With { &v } else { dot };
                                self.walk(dot, list)?
                            } else if let Some(e) = else_list {
                                self.walk(dot, e)?
                            } else {
                                Flow::Normal
                            };
                            self.vars.truncate(mark);
                            flow
                        }
                    };
                    self.depth -= 1;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Template { pos, name, pipe } => {
                    self.at = Some(At::Template(*pos, name, pipe.as_ref()));
                    let Some(body) = self.t.defined.get(name) else {
                        if name == &self.t.name {
                            self.call_template(dot, name, pipe.as_ref(), &self.t.root)?;
                            continue;
                        }
                        return Err(self.errorf(format!("template {} not defined", go_quote(name))));
                    };
                    self.call_template(dot, name, pipe.as_ref(), body)?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn call_template(
        &mut self,
        dot: &Value,
        name: &'t str,
        pipe: Option<&'t Pipe>,
        body: &'t [Node],
    ) -> R<()> {
        if self.depth >= MAX_DEPTH {
            return Err(self.errorf(format!("exceeded maximum template depth ({MAX_DEPTH})")));
        }
        let new_dot = match pipe {
            Some(p) => self.eval_pipeline(dot, p)?,
            None => Value::Nil,
        };
        self.depth += 1;
        let vars = std::mem::replace(&mut self.vars, vec![("$".to_string(), new_dot.clone())]);
        let outer = std::mem::replace(&mut self.name, name);
        let r = self.walk(&new_dot, body);
        self.name = outer;
        self.vars = vars;
        self.depth -= 1;
        r.map(|_| ())
    }

    fn walk_range(
        &mut self,
        dot: &Value,
        pipe: &'t Pipe,
        list: &'t [Node],
        else_list: Option<&'t [Node]>,
    ) -> R<Flow> {
        let mark = self.vars.len();
        let val = self.eval_pipeline(dot, pipe)?;
        // (key, element) pairs, produced as the loop runs: a huge integer count is ended
        // by the step limit, not materialised.
        let items: Box<dyn Iterator<Item = (Value, Value)>> = match &val {
            Value::List(l, _) => {
                let l = l.clone();
                Box::new((0..l.len()).map(move |i| (Value::Int(i as i64), l[i].clone())))
            }
            Value::Samples(s) => {
                let s = s.clone();
                Box::new(
                    (0..s.len()).map(move |i| (Value::Int(i as i64), Value::Sample(s[i].clone()))),
                )
            }
            Value::StrMap(m) => Box::new(
                m.iter()
                    .map(|(k, v)| (Value::str(k.as_str()), Value::str(v.as_str())))
                    .collect::<Vec<_>>()
                    .into_iter(),
            ),
            Value::AnyMap(m) => Box::new(
                m.iter()
                    .map(|(k, v)| (Value::str(k.as_str()), v.clone()))
                    .collect::<Vec<_>>()
                    .into_iter(),
            ),
            Value::Int(n) => {
                if pipe.decl.len() > 1 {
                    return Err(self.errorf(format!(
                        "can't use {n} to iterate over more than one variable"
                    )));
                }
                Box::new((0..*n).map(|i| (Value::Int(i), Value::Int(i))))
            }
            Value::Nil => Box::new(std::iter::empty()),
            other => {
                return Err(self.errorf(format!(
                    "range can't iterate over {}",
                    gofmt::v_string(other)
                )))
            }
        };
        let mut ran = false;
        for (key, elem) in items {
            ran = true;
            self.step()?;
            if !pipe.decl.is_empty() {
                if pipe.is_assign {
                    if pipe.decl.len() > 1 {
                        self.set_var(&pipe.decl[0], key.clone())?;
                        self.set_var(&pipe.decl[1], elem.clone())?;
                    } else {
                        self.set_var(&pipe.decl[0], elem.clone())?;
                    }
                } else {
                    let n = self.vars.len();
                    self.vars[n - 1].1 = elem.clone();
                    if pipe.decl.len() > 1 {
                        self.vars[n - 2].1 = key.clone();
                    }
                }
            }
            let inner = self.vars.len();
            let flow = self.walk(&elem, list)?;
            self.vars.truncate(inner);
            if let Flow::Break = flow {
                break;
            }
        }
        let flow = match else_list {
            Some(e) if !ran => self.walk(dot, e)?,
            _ => Flow::Normal,
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn set_var(&mut self, name: &str, v: Value) -> R<()> {
        match self.vars.iter().rev().position(|(n, _)| n == name) {
            Some(back) => {
                self.steps += (back / 64) as u64;
                let i = self.vars.len() - 1 - back;
                self.vars[i].1 = v;
                Ok(())
            }
            None => Err(self.errorf(format!("undefined variable: {name}"))),
        }
    }

    fn var_value(&mut self, name: &str) -> R<Value> {
        match self.vars.iter().rev().position(|(n, _)| n == name) {
            Some(back) => {
                // Looking far back through many variables costs steps.
                self.steps += (back / 64) as u64;
                Ok(self.vars[self.vars.len() - 1 - back].1.clone())
            }
            None => Err(self.errorf(format!("undefined variable: {name}"))),
        }
    }

    fn eval_pipeline(&mut self, dot: &Value, pipe: &'t Pipe) -> R<Value> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            self.step()?;
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let v = value.unwrap_or(Value::Nil);
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, v.clone())?;
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn not_a_function(&self, args: &[Arg], final_: &Option<Value>) -> R<()> {
        if args.len() > 1 || final_.is_some() {
            return Err(self.errorf(format!("can't give argument to non-function {}", args[0])));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Value, cmd: &'t Cmd, final_: Option<Value>) -> R<Value> {
        let first = &cmd.args[0];
        match first {
            Arg::Field(_, idents) => {
                self.at = Some(At::Arg(first));
                self.eval_field_chain(dot, dot.clone(), first, idents, &cmd.args, final_)
            }
            Arg::Chain(..) => self.eval_chain(dot, first, &cmd.args, final_),
            Arg::Identifier(_, name) => {
                self.at = Some(At::Arg(first));
                self.eval_function(dot, name, At::Cmd(cmd), &cmd.args, final_)
            }
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &final_)?;
                self.deeper()?;
                let v = self.eval_pipeline(dot, p);
                self.depth -= 1;
                v
            }
            Arg::Variable(_, idents) => self.eval_variable(dot, first, idents, &cmd.args, final_),
            _ => {
                self.at = Some(At::Arg(first));
                self.not_a_function(&cmd.args, &final_)?;
                match first {
                    Arg::Bool(_, b) => Ok(Value::Bool(*b)),
                    Arg::Dot(_) => Ok(dot.clone()),
                    Arg::Nil(_) => Err(self.errorf("nil is not a command")),
                    Arg::Number(_, n) => self.ideal_constant(n),
                    Arg::Str(_, _, s) => Ok(Value::str(s.as_str())),
                    _ => Err(self.errorf(format!(
                        "can't evaluate command {}",
                        go_quote(&first.to_string())
                    ))),
                }
            }
        }
    }

    fn ideal_constant(&self, n: &super::parse::Number) -> R<Value> {
        if n.complex {
            return Err(self.errorf(format!("complex constant {} is not supported", n.text)));
        }
        let t = n.text.trim_start_matches(['+', '-']).to_ascii_lowercase();
        let hex_int = t.starts_with("0x") && !t.contains('.') && !t.contains('p');
        let rune = n.text.starts_with('\'');
        if let Some(f) = n.float {
            if !hex_int && !rune && t.contains(['.', 'e', 'p']) {
                return Ok(Value::Float(f));
            }
        }
        if let Some(i) = n.int {
            return Ok(Value::Int(i));
        }
        if n.uint.is_some() {
            return Err(self.errorf(format!("{} overflows int", n.text)));
        }
        Ok(Value::Nil)
    }

    fn eval_variable(
        &mut self,
        dot: &Value,
        node: &'t Arg,
        idents: &'t [String],
        args: &'t [Arg],
        final_: Option<Value>,
    ) -> R<Value> {
        self.at = Some(At::Arg(node));
        let v = self.var_value(&idents[0])?;
        if idents.len() == 1 {
            self.not_a_function(args, &final_)?;
            return Ok(v);
        }
        self.eval_field_chain(dot, v, node, &idents[1..], args, final_)
    }

    fn eval_chain(
        &mut self,
        dot: &Value,
        chain: &'t Arg,
        args: &'t [Arg],
        final_: Option<Value>,
    ) -> R<Value> {
        let Arg::Chain(_, node, fields) = chain else {
            return Err(self.errorf("internal error: not a chain"));
        };
        self.at = Some(At::Arg(chain));
        if let Arg::Nil(_) = node.as_ref() {
            return Err(self.errorf(format!("indirection through explicit nil in {chain}")));
        }
        let pipe = self.eval_arg(dot, Ty::Any, node)?;
        self.eval_field_chain(dot, pipe, chain, fields, args, final_)
    }

    fn eval_field_chain(
        &mut self,
        dot: &Value,
        mut receiver: Value,
        node: &'t Arg,
        idents: &'t [String],
        args: &'t [Arg],
        final_: Option<Value>,
    ) -> R<Value> {
        let n = idents.len();
        for ident in &idents[..n - 1] {
            receiver = self.eval_field(dot, ident, node, &[], None, receiver)?;
        }
        self.eval_field(dot, &idents[n - 1], node, args, final_, receiver)
    }

    fn eval_field(
        &mut self,
        dot: &Value,
        name: &str,
        node: &'t Arg,
        args: &'t [Arg],
        final_: Option<Value>,
        receiver: Value,
    ) -> R<Value> {
        if let Value::Nil = receiver {
            return Ok(Value::Nil);
        }
        if let Some(m) = funcs::method(&receiver, name) {
            let call_args = if args.is_empty() { &[][..] } else { &args[1..] };
            return self.eval_call(
                dot,
                Callee::Method(receiver, m),
                name,
                At::Arg(node),
                call_args,
                final_,
            );
        }
        let has_args = args.len() > 1 || final_.is_some();
        let field = match &receiver {
            Value::Alert(a) => match name {
                "Labels" => Some(Value::StrMap(a.labels.clone())),
                "ExternalLabels" => Some(Value::StrMap(a.external_labels.clone())),
                "ExternalURL" => Some(Value::Str(a.external_url.clone())),
                "Value" => Some(Value::Float(a.value)),
                _ => None,
            },
            Value::Sample(s) => match name {
                "Labels" => Some(Value::StrMap(Rc::new(s.labels.clone()))),
                "Value" => Some(Value::Float(s.value)),
                _ => None,
            },
            Value::StrMap(m) => {
                if has_args {
                    return Err(self.errorf(format!("{name} is not a method but has arguments")));
                }
                return Ok(Value::str(m.get(name).map_or("", String::as_str)));
            }
            Value::AnyMap(m) => {
                if has_args {
                    return Err(self.errorf(format!("{name} is not a method but has arguments")));
                }
                return Ok(m.get(name).cloned().unwrap_or(Value::Nil));
            }
            _ => None,
        };
        match field {
            Some(v) => {
                if has_args {
                    return Err(self.errorf(format!(
                        "{name} has arguments but cannot be invoked as function"
                    )));
                }
                Ok(v)
            }
            None => Err(self.errorf(format!(
                "can't evaluate field {name} in type {}",
                receiver.type_name()
            ))),
        }
    }

    fn eval_function(
        &mut self,
        dot: &Value,
        name: &str,
        cmd: At<'t>,
        args: &'t [Arg],
        final_: Option<Value>,
    ) -> R<Value> {
        let Some(f) = funcs::function(name) else {
            return Err(self.errorf(format!("{} is not a defined function", go_quote(name))));
        };
        let call_args = if args.is_empty() { &[][..] } else { &args[1..] };
        self.eval_call(dot, Callee::Function(f), name, cmd, call_args, final_)
    }

    fn eval_call(
        &mut self,
        dot: &Value,
        callee: Callee,
        name: &str,
        node: At<'t>,
        args: &'t [Arg],
        final_: Option<Value>,
    ) -> R<Value> {
        let sig = match &callee {
            Callee::Function(f) => f.sig,
            Callee::Method(_, m) => m.sig,
        };
        let num_in = args.len() + usize::from(final_.is_some());
        let fixed = sig.params.len();
        if sig.variadic.is_some() {
            if num_in < fixed {
                return Err(self.errorf(format!(
                    "wrong number of args for {name}: want at least {fixed} got {}",
                    args.len()
                )));
            }
        } else if num_in != fixed {
            return Err(self.errorf(format!(
                "wrong number of args for {name}: want {fixed} got {num_in}"
            )));
        }
        let ty_at = |i: usize| -> Ty {
            if i < fixed {
                sig.params[i]
            } else {
                sig.variadic.unwrap_or(Ty::Any)
            }
        };
        // `and` and `or` stop at the first argument that decides them.
        if let Callee::Function(f) = &callee {
            if f.name == "and" || f.name == "or" {
                let want = f.name == "or";
                let mut v = Value::Nil;
                for a in args {
                    v = self.eval_arg(dot, Ty::Reflect, a)?;
                    if v.truth() == want {
                        return Ok(v);
                    }
                }
                if let Some(f) = final_ {
                    v = f;
                }
                return Ok(v);
            }
        }
        let mut argv = Vec::with_capacity(num_in);
        for (i, a) in args.iter().enumerate() {
            argv.push(self.eval_arg(dot, ty_at(i), a)?);
        }
        if let Some(f) = final_ {
            let v = self.validate_type(f, ty_at(args.len()))?;
            argv.push(v);
        }
        let result = match callee {
            Callee::Function(f) => (f.call)(self.env, argv),
            Callee::Method(recv, m) => (m.call)(&recv, argv),
        };
        self.steps += self.env.cost.take();
        match result {
            Ok(v) => {
                if let Value::Str(s) | Value::Html(s) = &v {
                    // Long results cost steps too, so big widths and
                    // precisions cannot be repeated without end.
                    self.steps += (s.len() / 64) as u64;
                    self.step()?;
                    if s.len() > MAX_OUTPUT {
                        self.at = Some(node);
                        return Err(self.errorf(format!(
                            "error calling {name}: result is over {MAX_OUTPUT} bytes"
                        )));
                    }
                }
                Ok(v)
            }
            Err(e) => {
                self.at = Some(node);
                Err(self.errorf(format!("error calling {name}: {e}")))
            }
        }
    }

    fn validate_type(&self, v: Value, ty: Ty) -> R<Value> {
        if let Value::Nil = v {
            return if ty.can_be_nil() {
                Ok(Value::Nil)
            } else {
                Err(self.errorf(format!("invalid value; expected {}", ty.name())))
            };
        }
        if ty.accepts(&v) {
            return Ok(v);
        }
        Err(self.errorf(format!(
            "wrong type for value; expected {}; got {}",
            ty.name(),
            v.type_name()
        )))
    }

    fn eval_arg(&mut self, dot: &Value, ty: Ty, n: &'t Arg) -> R<Value> {
        self.at = Some(At::Arg(n));
        let single = std::slice::from_ref(n);
        let v = match n {
            Arg::Dot(_) => dot.clone(),
            Arg::Nil(_) => {
                if ty.can_be_nil() {
                    return Ok(Value::Nil);
                }
                return Err(self.errorf(format!("cannot assign nil to {}", ty.name())));
            }
            Arg::Field(_, idents) => {
                self.eval_field_chain(dot, dot.clone(), n, idents, single, None)?
            }
            Arg::Variable(_, idents) => self.eval_variable(dot, n, idents, single, None)?,
            Arg::Pipe(p) => {
                self.deeper()?;
                let v = self.eval_pipeline(dot, p);
                self.depth -= 1;
                v?
            }
            Arg::Identifier(_, name) => self.eval_function(dot, name, At::Arg(n), &[], None)?,
            Arg::Chain(..) => self.eval_chain(dot, n, single, None)?,
            Arg::Bool(_, b) => match ty {
                Ty::Any | Ty::Reflect => return Ok(Value::Bool(*b)),
                _ => return Err(self.literal_mismatch(ty, n)),
            },
            Arg::Str(_, _, s) => match ty {
                Ty::Str | Ty::Any | Ty::Reflect => return Ok(Value::str(s.as_str())),
                _ => return Err(self.literal_mismatch(ty, n)),
            },
            Arg::Number(_, num) => match ty {
                Ty::Any | Ty::Reflect => return self.ideal_constant(num),
                Ty::Int | Ty::Duration => {
                    return match num.int {
                        Some(i) if ty == Ty::Int => Ok(Value::Int(i)),
                        Some(i) => Ok(Value::Duration(i)),
                        None => Err(self.errorf(format!("expected integer; found {n}"))),
                    }
                }
                _ => return Err(self.literal_mismatch(ty, n)),
            },
        };
        self.validate_type(v, ty)
    }

    fn literal_mismatch(&self, ty: Ty, n: &Arg) -> String {
        match ty {
            Ty::Str => self.errorf(format!("expected string; found {n}")),
            Ty::Int | Ty::Duration => self.errorf(format!("expected integer; found {n}")),
            _ => self.errorf(format!("can't handle {n} for arg of type {}", ty.name())),
        }
    }
}

pub(super) enum Callee {
    Function(&'static funcs::Function),
    Method(Value, &'static funcs::Method),
}
