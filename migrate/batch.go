package migrate

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// The sizes below are those of consul/api's encoding of a transaction:
// json.Encoder over api.TxnOps, each op
//
//	{"KV":{"Verb":"set","Key":"...","Value":"<base64>","Flags":N,"Index":0,"Session":""},"Node":null,"Service":null,"Check":null}
//
// in one array, followed by the encoder's newline. A nil value is null.

const (
	opHead     = len(`{"KV":{"Verb":"`)
	opKey      = len(`","Key":"`)
	opValue    = len(`","Value":`)
	opFlags    = len(`,"Flags":`)
	opIndex    = len(`,"Index":`)
	opSession  = len(`,"Session":"`)
	opTail     = len(`"},"Node":null,"Service":null,"Check":null}`)
	opFixed    = opHead + opKey + opValue + opFlags + opIndex + opSession + opTail
	bodyFixed  = len("[]\n")
	maxDigits  = 20 // len("18446744073709551615")
	sessionLen = 36 // a Consul session id is a UUID
	// maxLockKey is what MaxRecordData reserves for the lock key, which it
	// does not know.
	maxLockKey = 256
)

// AppendTxn appends to dst the body consul/api sends for ops behind fence
// (the check-session op first when fence has a session), byte for byte:
// its length is what BodySize computes. Writing it directly saves the
// reflection of encoding/json over api.TxnOps (12% of the CPU samples of
// a migration profiled in process).
func AppendTxn(dst []byte, fence Fence, ops []Op) []byte {
	// Room for it all, unless keys need escaping: one allocation.
	n := bodyFixed + opFixed + len(verbCheckSession) + len(fence.LockKey) + len(fence.Session)
	for _, op := range ops {
		n += 1 + opFixed + len(op.Verb) + len(op.Key) + valueSize(len(op.Value)) + 2*maxDigits
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, '[')
	if fence.Session != "" {
		dst = appendOp(dst, Op{Verb: verbCheckSession, Key: fence.LockKey}, fence.Session)
	}
	for i, op := range ops {
		if i > 0 || fence.Session != "" {
			dst = append(dst, ',')
		}
		dst = appendOp(dst, op, "")
	}
	return append(dst, "]\n"...)
}

func appendOp(dst []byte, op Op, session string) []byte {
	dst = append(dst, `{"KV":{"Verb":`...)
	dst = appendJSONString(dst, string(op.Verb))
	dst = append(dst, `,"Key":`...)
	dst = appendJSONString(dst, op.Key)
	dst = append(dst, `,"Value":`...)
	if op.Value == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, op.Value)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"Flags":`...)
	dst = strconv.AppendUint(dst, op.Flags, 10)
	dst = append(dst, `,"Index":`...)
	dst = strconv.AppendUint(dst, op.Index, 10)
	dst = append(dst, `,"Session":`...)
	dst = appendJSONString(dst, session)
	return append(dst, `},"Node":null,"Service":null,"Check":null}`...)
}

// appendJSONString appends s quoted as encoding/json quotes it, HTML
// escaping included. Escaped keys are plain ASCII and take the fast path;
// anything else is left to encoding/json itself.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// jsonStringLen is the length of s inside the quotes of its JSON encoding
// by encoding/json with HTML escaping, as consul/api encodes it.
func jsonStringLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 6 // \ufffd
		case r == '\u2028' || r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}

func digits(u uint64) int {
	n := 1
	for u >= 10 {
		u /= 10
		n++
	}
	return n
}

// valueSize is the encoded size of a value of n bytes; an empty value is
// counted as null, the longer of null and "".
func valueSize(n int) int {
	if n == 0 {
		return len("null")
	}
	return 2 + base64.StdEncoding.EncodedLen(n)
}

// opSize is the exact encoded size of one op.
func opSize(verb Verb, key string, valueLen int, flags, index uint64, session string) int {
	return opFixed + len(verb) + jsonStringLen(key) + valueSize(valueLen) +
		digits(flags) + digits(index) + jsonStringLen(session)
}

// OpSize is a safe upper bound of the encoded size of one set op of key with
// a value of valueLen bytes, whatever its flags: it is exact for the widest
// flags.
func OpSize(key string, valueLen int) int {
	return opSize(VerbSet, key, valueLen, math.MaxUint64, 0, "")
}

// BodySize is the encoded size of a transaction whose ops have the given
// encoded sizes summing to sum.
func BodySize(ops, sum int) int {
	if ops == 0 {
		return bodyFixed
	}
	return bodyFixed + sum + ops - 1
}

// fenceSize is the encoded size of the check-session op of fence, 0 when
// there is none.
func fenceSize(f Fence) int {
	if f.Session == "" {
		return 0
	}
	return opSize(verbCheckSession, f.LockKey, 0, 0, 0, f.Session)
}

// maxData is the largest value of key with the given flags that fits one
// transaction besides an op of fenceSz bytes, and kv_max_value_size.
func maxData(l Limits, key string, flags uint64, fenceSz int) int {
	avail := l.MaxBody - BodySize(2, fenceSz+opSize(VerbSet, key, 0, flags, 0, "")-len("null"))
	// 2 + 4*ceil(n/3) <= avail
	n := 3 * ((avail - 2) / 4)
	if n < 0 {
		n = 0
	}
	if l.MaxOps < 2 {
		n = 0
	}
	return min(n, l.MaxValue)
}

// MaxRecordData is the largest record data of key that fits one fenced
// transaction whatever the record's version and lock key (reserving room for
// the widest flags and a lock key of up to 256 bytes), and kv_max_value_size.
// The migration itself checks each record against its own version and the
// fence it holds: Batcher.MaxData.
func MaxRecordData(l Limits, key string) int {
	return maxData(l, key, math.MaxUint64, opSize(verbCheckSession, "", 0, 0, 0, "")+maxLockKey+sessionLen)
}

// sizeFailure is the reason of a record whose n bytes of data exceed max.
func sizeFailure(l Limits, n, max int) string {
	if n > l.MaxValue {
		return fmt.Sprintf("data of %d bytes exceeds kv_max_value_size (%d bytes): raise kv_max_value_size (and txn_max_req_len) in the Consul servers' limits config", n, l.MaxValue)
	}
	return fmt.Sprintf("data of %d bytes exceeds the %d bytes that fit one fenced Consul transaction: raise txn_max_req_len in the Consul servers' limits config", n, max)
}

// Batch is one write transaction in the making: its ops own their values.
type Batch struct {
	Ops     []Op
	Body    int // encoded request bytes, fence op included
	Records int64

	arena []byte
	seq   int64 // the copy's number for it, in the order it was sent
}

// Batcher packs set ops into transactions that respect Limits: at most
// MaxOps ops, the fence op included, and a body of at most MaxBody bytes.
// Batches are recycled to keep memory constant.
type Batcher struct {
	limits Limits
	fence  int
	cur    *Batch
	free   chan *Batch
}

// NewBatcher returns a batcher for transactions behind fence. Up to keep
// recycled batches are kept for reuse.
func NewBatcher(l Limits, fence Fence, keep int) *Batcher {
	return &Batcher{limits: l, fence: fenceSize(fence), free: make(chan *Batch, keep)}
}

// MaxData is the largest data of key this batcher can store.
func (b *Batcher) MaxData(key string, flags uint64) int {
	return maxData(b.limits, key, flags, b.fence)
}

func (b *Batcher) fenceOps() int {
	if b.fence > 0 {
		return 1
	}
	return 0
}

func (b *Batcher) newBatch() *Batch {
	select {
	case x := <-b.free:
		return x
	default:
		return &Batch{}
	}
}

// Add adds a set of key to the batch being built; data is copied. When the
// op does not fit, Add returns the full batch and starts a new one with the
// op. The caller has checked len(data) <= MaxData(key, flags).
func (b *Batcher) Add(key string, flags uint64, data []byte) (full *Batch) {
	full, c := b.next(opSize(VerbSet, key, len(data), flags, 0, ""))
	var v []byte
	if data != nil {
		if cap(c.arena)-len(c.arena) < len(data) {
			c.arena = make([]byte, 0, max(2*cap(c.arena), len(data), 4096))
		}
		start := len(c.arena)
		c.arena = append(c.arena, data...)
		v = c.arena[start:len(c.arena):len(c.arena)]
	}
	c.Ops = append(c.Ops, Op{Verb: VerbSet, Key: key, Value: v, Flags: flags})
	c.Records++
	return full
}

// AddDelete adds a delete of key, as Add adds a set.
func (b *Batcher) AddDelete(key string) (full *Batch) {
	full, c := b.next(opSize(VerbDelete, key, 0, 0, 0, ""))
	c.Ops = append(c.Ops, Op{Verb: VerbDelete, Key: key})
	c.Records++
	return full
}

// next makes room for an op of size bytes: it returns the batch the op
// goes to, and the full batch it closed, if any.
func (b *Batcher) next(size int) (full, cur *Batch) {
	if c := b.cur; c != nil {
		n := len(c.Ops) + b.fenceOps()
		if n+1 > b.limits.MaxOps || c.Body+1+size > b.limits.MaxBody {
			full, b.cur = c, nil
		}
	}
	if b.cur == nil {
		b.cur = b.newBatch()
		b.cur.Body = BodySize(b.fenceOps(), b.fence)
	}
	c := b.cur
	if len(c.Ops)+b.fenceOps() > 0 {
		c.Body++ // the comma
	}
	c.Body += size
	return full, c
}

// Flush returns the batch being built, nil when it is empty.
func (b *Batcher) Flush() *Batch {
	c := b.cur
	b.cur = nil
	return c
}

// Recycle hands a batch whose transaction is over back for reuse. It is
// safe for concurrent use.
func (b *Batcher) Recycle(x *Batch) {
	clear(x.Ops)
	x.Ops, x.Body, x.Records, x.arena = x.Ops[:0], 0, 0, x.arena[:0]
	select {
	case b.free <- x:
	default:
	}
}

// describe names a batch in errors.
func (x *Batch) describe() string {
	if len(x.Ops) == 0 {
		return "empty batch"
	}
	return "batch at " + strconv.Quote(x.Ops[0].Key)
}
