//! A restricted pickle interpreter: exactly what a PyTorch state dict needs, nothing else.
//!
//! A pickle is a program for a stack machine, and Python's own unpickler will import and call any
//! global it names (`os.system`, `builtins.eval`, ...). This interpreter never imports or calls
//! anything: it knows a fixed list of opcodes and a fixed list of globals (`OrderedDict`, the
//! torch tensor-rebuild functions and the torch storage types) and refuses everything else with a
//! message naming what it refused. Its memory is bounded by the input: every opcode consumes at
//! least one byte, declared lengths are checked against the bytes left, and the stack, the memo and
//! the declared storage sizes have explicit limits.

use std::collections::HashMap;
use std::rc::Rc;

use super::storage::StorageDType;

/// Deepest stack (values plus marks) a state-dict pickle could plausibly need.
const MAX_STACK_DEPTH: usize = 1 << 20;
/// Most memo entries a pickle may define.
const MAX_MEMO_ENTRIES: usize = 1 << 22;
/// Longest `GLOBAL` module or name line, in bytes.
const MAX_GLOBAL_LINE: usize = 256;
/// Highest tensor rank accepted (torch itself allows 64; state dicts use at most 5).
const MAX_TENSOR_RANK: usize = 16;
/// Highest pickle protocol we know.
const MAX_PROTOCOL: u8 = 5;

/// What a pickle may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PickleMode {
    /// Plain data only (numbers, strings, dicts, lists, tuples): no global, no persistent id.
    Plain,
    /// A torch state dict: also the allow-listed globals and `('storage', ...)` persistent ids.
    StateDict,
}

/// A global the interpreter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    StorageType(StorageDType),
}

/// Index of a container in the interpreter's arena.
pub(crate) type ObjId = usize;

/// A value on the pickle stack.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i128),
    /// A float (state dicts only carry them as hyper-parameters, which we skip).
    Float,
    Str(Rc<str>),
    /// A bytes object (skipped like floats).
    Bytes,
    /// A dict, list or tuple in the arena (pickle containers are shared by reference).
    Obj(ObjId),
    Global(Global),
    /// Index into [`Unpickled::storages`].
    Storage(usize),
    /// Index into [`Unpickled::tensors`].
    Tensor(usize),
}

/// A container.
#[derive(Debug)]
pub(crate) enum Obj {
    Dict(Vec<(Value, Value)>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
}

/// A storage named by a persistent id: `('storage', type, key, location, numel[, view])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    pub key: String,
    pub dtype: StorageDType,
    /// Elements in the whole (root) storage.
    pub numel: u64,
    /// Legacy storage views: `(offset, numel)` in elements within the root storage.
    pub view: Option<(u64, u64)>,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorSpec {
    /// Index into [`Unpickled::storages`].
    pub storage: usize,
    /// In elements.
    pub offset: u64,
    pub size: Vec<u64>,
    /// In elements.
    pub stride: Vec<u64>,
}

/// The result of running one pickle.
#[derive(Debug)]
pub(crate) struct Unpickled {
    pub root: Value,
    pub arena: Vec<Obj>,
    pub storages: Vec<StorageRef>,
    pub tensors: Vec<TensorSpec>,
}

/// Why a pickle was refused; `offset` is the byte position of the offending opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PickleError {
    pub offset: usize,
    pub message: String,
    /// Refusals of globals carry their own complete message (no offset needed).
    pub refused_global: bool,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.refused_global {
            f.write_str(&self.message)
        } else {
            write!(f, "pickle byte {}: {}", self.offset, self.message)
        }
    }
}

type PResult<T> = std::result::Result<T, String>;

/// Runs the pickle that starts at `data[*pos]`, advancing `*pos` past its STOP opcode.
///
/// `max_storage_bytes` bounds the byte size any persistent id may declare (the file size: a storage
/// cannot hold more data than the file that carries it).
pub(crate) fn unpickle(
    data: &[u8],
    pos: &mut usize,
    mode: PickleMode,
    max_storage_bytes: u64,
) -> Result<Unpickled, PickleError> {
    let mut machine = Machine {
        data,
        pos: *pos,
        mode,
        max_storage_bytes,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        arena: Vec::new(),
        storages: Vec::new(),
        storage_keys: HashMap::new(),
        tensors: Vec::new(),
    };
    let result = loop {
        let op_start = machine.pos;
        match machine.step() {
            Ok(Some(root)) => break Ok(root),
            Ok(None) => {}
            Err(message) => break Err((op_start, message)),
        }
    };
    match result {
        Ok(root) => {
            *pos = machine.pos;
            Ok(Unpickled {
                root,
                arena: machine.arena,
                storages: machine.storages,
                tensors: machine.tensors,
            })
        }
        Err((offset, message)) => Err(PickleError {
            offset,
            refused_global: message.starts_with(REFUSAL_PREFIX),
            message,
        }),
    }
}

const REFUSAL_PREFIX: &str = "refusing pickle global ";

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    mode: PickleMode,
    max_storage_bytes: u64,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    arena: Vec<Obj>,
    storages: Vec<StorageRef>,
    storage_keys: HashMap<(String, Option<(u64, u64)>), usize>,
    tensors: Vec<TensorSpec>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "truncated: needs {n} more bytes but only {} remain",
                    self.data.len() - self.pos
                )
            })?;
        let data: &'a [u8] = self.data;
        self.pos = end;
        Ok(&data[end - n..end])
    }

    fn take_array<const N: usize>(&mut self) -> PResult<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take_array::<1>()?[0])
    }

    fn u32_le(&mut self) -> PResult<u32> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    fn len_u64(&mut self) -> PResult<usize> {
        let n = u64::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| format!("declared length {n} does not fit in memory"))
    }

    fn line(&mut self) -> PResult<&'a str> {
        let data: &'a [u8] = self.data;
        let rest = &data[self.pos..];
        let limit = rest.len().min(MAX_GLOBAL_LINE + 1);
        let newline = rest[..limit]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("GLOBAL line is truncated or longer than 256 bytes")?;
        let bytes = &data[self.pos..self.pos + newline];
        self.pos += newline + 1;
        std::str::from_utf8(bytes).map_err(|_| "GLOBAL line is not UTF-8".to_string())
    }

    fn push(&mut self, value: Value) -> PResult<()> {
        if self.stack.len() + self.marks.len() >= MAX_STACK_DEPTH {
            return Err(format!("stack deeper than {MAX_STACK_DEPTH} entries"));
        }
        self.stack.push(value);
        Ok(())
    }

    fn pop(&mut self) -> PResult<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("pops from an empty stack".into());
        }
        Ok(self.stack.pop().expect("length checked above"))
    }

    fn top(&self) -> PResult<&Value> {
        self.stack.last().ok_or_else(|| "stack is empty".into())
    }

    fn pop_mark(&mut self) -> PResult<Vec<Value>> {
        let mark = self.marks.pop().ok_or("no MARK to pop to")?;
        Ok(self.stack.split_off(mark))
    }

    fn new_obj(&mut self, obj: Obj) -> Value {
        self.arena.push(obj);
        Value::Obj(self.arena.len() - 1)
    }

    fn push_str(&mut self, len: usize) -> PResult<()> {
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| "string is not UTF-8".to_string())?;
        let value = Value::Str(Rc::from(s));
        self.push(value)
    }

    fn push_bytes(&mut self, len: usize) -> PResult<()> {
        self.take(len)?;
        self.push(Value::Bytes)
    }

    fn push_long(&mut self, len: usize) -> PResult<()> {
        if len > 16 {
            return Err(format!("integer of {len} bytes is too large"));
        }
        let bytes = self.take(len)?;
        let mut value: i128 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            value |= i128::from(b) << (8 * i);
        }
        if len > 0 && len < 16 && bytes[len - 1] & 0x80 != 0 {
            value -= 1i128 << (8 * len);
        }
        self.push(Value::Int(value))
    }

    fn memo_put(&mut self, index: u32) -> PResult<()> {
        if self.memo.len() >= MAX_MEMO_ENTRIES && !self.memo.contains_key(&index) {
            return Err(format!("more than {MAX_MEMO_ENTRIES} memo entries"));
        }
        let value = self.top()?.clone();
        self.memo.insert(index, value);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> PResult<()> {
        let value = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| format!("memo entry {index} read before it was written"))?;
        self.push(value)
    }

    fn dict_mut(&mut self, value: &Value) -> PResult<&mut Vec<(Value, Value)>> {
        match value {
            Value::Obj(id) => match &mut self.arena[*id] {
                Obj::Dict(items) => Ok(items),
                _ => Err("SETITEM on something that is not a dict".into()),
            },
            _ => Err("SETITEM on something that is not a dict".into()),
        }
    }

    fn list_mut(&mut self, value: &Value) -> PResult<&mut Vec<Value>> {
        match value {
            Value::Obj(id) => match &mut self.arena[*id] {
                Obj::List(items) => Ok(items),
                _ => Err("APPEND on something that is not a list".into()),
            },
            _ => Err("APPEND on something that is not a list".into()),
        }
    }

    /// Executes one opcode; returns the result at STOP.
    fn step(&mut self) -> PResult<Option<Value>> {
        let op = self.u8()?;
        match op {
            0x80 => {
                let protocol = self.u8()?;
                if protocol > MAX_PROTOCOL {
                    return Err(format!("unknown pickle protocol {protocol}"));
                }
            }
            0x95 => {
                // FRAME: a length hint only.
                let len = self.len_u64()?;
                if len > self.data.len() - self.pos {
                    return Err("FRAME is longer than the data left".into());
                }
            }
            b'.' => {
                let root = self.pop()?;
                return Ok(Some(root));
            }
            b'(' => {
                if self.stack.len() + self.marks.len() >= MAX_STACK_DEPTH {
                    return Err(format!("stack deeper than {MAX_STACK_DEPTH} entries"));
                }
                self.marks.push(self.stack.len());
            }
            b'}' => {
                let v = self.new_obj(Obj::Dict(Vec::new()));
                self.push(v)?;
            }
            b']' => {
                let v = self.new_obj(Obj::List(Vec::new()));
                self.push(v)?;
            }
            b')' => {
                let v = self.new_obj(Obj::Tuple(Vec::new()));
                self.push(v)?;
            }
            b't' => {
                let items = self.pop_mark()?;
                let v = self.new_obj(Obj::Tuple(items));
                self.push(v)?;
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                let v = self.new_obj(Obj::Tuple(items));
                self.push(v)?;
            }
            b'J' => {
                let v = i32::from_le_bytes(self.take_array()?);
                self.push(Value::Int(v.into()))?;
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(v.into()))?;
            }
            b'M' => {
                let v = u16::from_le_bytes(self.take_array()?);
                self.push(Value::Int(v.into()))?;
            }
            0x8a => {
                let len = usize::from(self.u8()?);
                self.push_long(len)?;
            }
            0x8b => {
                let len = self.u32_le()? as usize;
                self.push_long(len)?;
            }
            b'G' => {
                self.take(8)?;
                self.push(Value::Float)?;
            }
            b'X' => {
                let len = self.u32_le()? as usize;
                self.push_str(len)?;
            }
            0x8c => {
                let len = usize::from(self.u8()?);
                self.push_str(len)?;
            }
            0x8d => {
                let len = self.len_u64()?;
                self.push_str(len)?;
            }
            b'T' => {
                // BINSTRING (Python 2 str): signed 32-bit length.
                let len = i32::from_le_bytes(self.take_array()?);
                let len = usize::try_from(len).map_err(|_| "negative string length")?;
                self.push_str(len)?;
            }
            b'U' => {
                let len = usize::from(self.u8()?);
                self.push_str(len)?;
            }
            b'B' => {
                let len = self.u32_le()? as usize;
                self.push_bytes(len)?;
            }
            b'C' => {
                let len = usize::from(self.u8()?);
                self.push_bytes(len)?;
            }
            b'N' => self.push(Value::None)?,
            0x88 => self.push(Value::Bool(true))?,
            0x89 => self.push(Value::Bool(false))?,
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                let target = self.top()?.clone();
                self.dict_mut(&target)?.push((key, value));
            }
            b'u' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err("SETITEMS with an odd number of items".into());
                }
                let target = self.top()?.clone();
                let dict = self.dict_mut(&target)?;
                let mut items = items.into_iter();
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    dict.push((k, v));
                }
            }
            b'a' => {
                let value = self.pop()?;
                let target = self.top()?.clone();
                self.list_mut(&target)?.push(value);
            }
            b'e' => {
                let items = self.pop_mark()?;
                let target = self.top()?.clone();
                self.list_mut(&target)?.extend(items);
            }
            b'q' => {
                let index = self.u8()?;
                self.memo_put(index.into())?;
            }
            b'r' => {
                let index = self.u32_le()?;
                self.memo_put(index)?;
            }
            0x94 => {
                let index = u32::try_from(self.memo.len()).map_err(|_| "memo overflow")?;
                self.memo_put(index)?;
            }
            b'h' => {
                let index = self.u8()?;
                self.memo_get(index.into())?;
            }
            b'j' => {
                let index = self.u32_le()?;
                self.memo_get(index)?;
            }
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.push(v)?;
            }
            b'c' => {
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                let g = self.resolve_global(&module, &name)?;
                self.push(Value::Global(g))?;
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => {
                        let g = self.resolve_global(&module, &name)?;
                        self.push(Value::Global(g))?;
                    }
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = self.persistent_load(pid)?;
                self.push(v)?;
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = self.reduce(callable, args)?;
                self.push(v)?;
            }
            b'b' => {
                // BUILD: only the `_metadata` attribute torch attaches to a state dict's
                // OrderedDict (or an empty state). The state is data we do not need.
                let state = self.pop()?;
                let target = self.top()?;
                let target_is_dict =
                    matches!(target, Value::Obj(id) if matches!(self.arena[*id], Obj::Dict(_)));
                let state_ok = match &state {
                    Value::None => true,
                    Value::Obj(id) => matches!(self.arena[*id], Obj::Dict(_) | Obj::Tuple(_)),
                    _ => false,
                };
                if !target_is_dict || !state_ok {
                    return Err("BUILD is only accepted on a dict with dict state".into());
                }
            }
            other => {
                return Err(format!(
                    "unsupported pickle opcode 0x{other:02x} (a state dict never needs it)"
                ))
            }
        }
        Ok(None)
    }

    fn resolve_global(&self, module: &str, name: &str) -> PResult<Global> {
        let refuse = || format!("{REFUSAL_PREFIX}{module}.{name}: a state dict never needs it");
        if self.mode == PickleMode::Plain {
            return Err(refuse());
        }
        let g = match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch", storage) => match StorageDType::from_torch_name(storage) {
                Some(dtype) => Global::StorageType(dtype),
                None => return Err(refuse()),
            },
            _ => return Err(refuse()),
        };
        Ok(g)
    }

    fn tuple_items(&self, value: &Value, what: &str) -> PResult<&[Value]> {
        match value {
            Value::Obj(id) => match &self.arena[*id] {
                Obj::Tuple(items) => Ok(items),
                _ => Err(format!("{what} is not a tuple")),
            },
            _ => Err(format!("{what} is not a tuple")),
        }
    }

    fn persistent_load(&mut self, pid: Value) -> PResult<Value> {
        if self.mode == PickleMode::Plain {
            return Err("persistent id outside the state-dict pickle".into());
        }
        let items = self.tuple_items(&pid, "persistent id")?;
        let bad = || "persistent id is not ('storage', type, key, location, numel[, view])";
        if !(5..=6).contains(&items.len()) {
            return Err(bad().into());
        }
        let (tag, dtype, key, numel) = match (&items[0], &items[1], &items[2], &items[4]) {
            (Value::Str(tag), Value::Global(Global::StorageType(dtype)), key, Value::Int(n)) => {
                let key = match key {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    _ => return Err(bad().into()),
                };
                (tag.clone(), *dtype, key, *n)
            }
            _ => return Err(bad().into()),
        };
        if &*tag != "storage" {
            return Err(format!("persistent id of kind {tag:?}, expected 'storage'"));
        }
        let numel = u64::try_from(numel).map_err(|_| format!("storage {key}: numel {numel}"))?;
        let view = match items.get(5) {
            None | Some(Value::None) => None,
            Some(v) => {
                let view = self.tuple_items(v, "storage view metadata")?;
                match view {
                    [_, Value::Int(offset), Value::Int(size)] => {
                        let offset = u64::try_from(*offset).map_err(|_| "negative view offset")?;
                        let size = u64::try_from(*size).map_err(|_| "negative view size")?;
                        if offset.checked_add(size).is_none_or(|end| end > numel) {
                            return Err(format!(
                                "storage {key}: view [{offset}, +{size}) outside its {numel} elements"
                            ));
                        }
                        Some((offset, size))
                    }
                    _ => return Err("storage view metadata is not (key, offset, size)".into()),
                }
            }
        };
        let bytes = numel.checked_mul(dtype.element_size() as u64);
        if bytes.is_none_or(|b| b > self.max_storage_bytes) {
            return Err(format!(
                "storage {key} declares {numel} elements of {}, more than the {} bytes of the file",
                dtype.torch_name(),
                self.max_storage_bytes
            ));
        }
        let storage = StorageRef {
            key: key.clone(),
            dtype,
            numel,
            view,
        };
        if let Some(&index) = self.storage_keys.get(&(key.clone(), view)) {
            let known = &self.storages[index];
            if known.dtype != dtype || known.numel != numel {
                return Err(format!(
                    "storage {key} is declared twice with different types"
                ));
            }
            return Ok(Value::Storage(index));
        }
        if let Some(other) = self.storages.iter().find(|s| s.key == key) {
            if other.dtype != dtype || other.numel != numel {
                return Err(format!(
                    "storage {key} is declared twice with different types"
                ));
            }
        }
        self.storages.push(storage);
        let index = self.storages.len() - 1;
        self.storage_keys.insert((key, view), index);
        Ok(Value::Storage(index))
    }

    fn reduce(&mut self, callable: Value, args: Value) -> PResult<Value> {
        let Value::Global(g) = callable else {
            return Err("REDUCE on something that is not an allowed global".into());
        };
        let args = self.tuple_items(&args, "REDUCE arguments")?.to_vec();
        match g {
            Global::OrderedDict => {
                if !args.is_empty() {
                    return Err("OrderedDict called with arguments".into());
                }
                Ok(self.new_obj(Obj::Dict(Vec::new())))
            }
            Global::RebuildTensorV2 | Global::RebuildTensor => {
                let expected = if g == Global::RebuildTensor {
                    4..=4
                } else {
                    6..=7
                };
                if !expected.contains(&args.len()) {
                    return Err(format!("tensor rebuild with {} arguments", args.len()));
                }
                let Value::Storage(storage) = args[0] else {
                    return Err("tensor rebuild without a storage".into());
                };
                let offset = match args[1] {
                    Value::Int(o) => u64::try_from(o).map_err(|_| "negative storage offset")?,
                    _ => return Err("storage offset is not an integer".into()),
                };
                let size = self.int_tuple(&args[2], "tensor size")?;
                let stride = self.int_tuple(&args[3], "tensor stride")?;
                if size.len() != stride.len() {
                    return Err(format!(
                        "tensor size has {} dimensions but its stride {}",
                        size.len(),
                        stride.len()
                    ));
                }
                self.tensors.push(TensorSpec {
                    storage,
                    offset,
                    size,
                    stride,
                });
                Ok(Value::Tensor(self.tensors.len() - 1))
            }
            Global::RebuildParameter => match args.first() {
                Some(Value::Tensor(t)) if args.len() == 3 => Ok(Value::Tensor(*t)),
                _ => Err("_rebuild_parameter without a tensor".into()),
            },
            Global::StorageType(dtype) => Err(format!(
                "torch.{} called directly (a state dict never needs it)",
                dtype.torch_name()
            )),
        }
    }

    fn int_tuple(&self, value: &Value, what: &str) -> PResult<Vec<u64>> {
        let items = self.tuple_items(value, what)?;
        if items.len() > MAX_TENSOR_RANK {
            return Err(format!("{what} has {} dimensions", items.len()));
        }
        items
            .iter()
            .map(|v| match v {
                Value::Int(i) => u64::try_from(*i).map_err(|_| format!("{what} has entry {i}")),
                _ => Err(format!("{what} has a non-integer entry")),
            })
            .collect()
    }
}
