package sip

import (
	"encoding/hex"
	"hash/fnv"
	"hash/maphash"
	"math/rand/v2"
	"sync"
)

const shards = 64

// shardMap is a string-keyed map split into locked shards so that the two
// UDP read loops and the timers rarely contend.
type shardMap[V comparable] struct {
	s [shards]struct {
		mu sync.Mutex
		m  map[string]V
		_  [40]byte // keep shards on separate cache lines
	}
}

// shardSeed seeds the shard choice (the runtime's AES hash: a third of
// FNV-1a's time on a Call-ID or branch, which the call table's shard
// choice spent on every datagram).
var shardSeed = maphash.MakeSeed()

// shardOf is the shard of key k.
func shardOf(k string) uint64 { return maphash.String(shardSeed, k) % shards }

// shardOfBytes is shardOf(string(k)).
func shardOfBytes(k []byte) uint64 { return maphash.Bytes(shardSeed, k) % shards }

func (m *shardMap[V]) get(k string) (v V, ok bool) {
	sh := &m.s[shardOf(k)]
	sh.mu.Lock()
	v, ok = sh.m[k]
	sh.mu.Unlock()
	return v, ok
}

func (m *shardMap[V]) put(k string, v V) {
	sh := &m.s[shardOf(k)]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = map[string]V{}
	}
	sh.m[k] = v
	sh.mu.Unlock()
}

// putNew stores v under k unless k is taken; it reports whether it stored.
func (m *shardMap[V]) putNew(k string, v V) bool {
	sh := &m.s[shardOf(k)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[k]; ok {
		return false
	}
	if sh.m == nil {
		sh.m = map[string]V{}
	}
	sh.m[k] = v
	return true
}

// delIf deletes k only while it still maps to v.
func (m *shardMap[V]) delIf(k string, v V) {
	sh := &m.s[shardOf(k)]
	sh.mu.Lock()
	if cur, ok := sh.m[k]; ok && cur == v {
		delete(sh.m, k)
	}
	sh.mu.Unlock()
}

func (m *shardMap[V]) len() int {
	n := 0
	for i := range m.s {
		sh := &m.s[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// rangeAll calls fn for a copy of each shard's entries (fn may lock calls).
func (m *shardMap[V]) rangeAll(fn func(string, V)) {
	type kv struct {
		k string
		v V
	}
	var buf []kv
	for i := range m.s {
		sh := &m.s[i]
		sh.mu.Lock()
		buf = buf[:0]
		for k, v := range sh.m {
			buf = append(buf, kv{k, v})
		}
		sh.mu.Unlock()
		for _, e := range buf {
			fn(e.k, e.v)
		}
	}
}

// Branch prefixes: every branch this proxy creates starts with branchOurs;
// stateless forwards and probes have their own so responses are told apart.
const (
	branchOurs      = "z9hG4bKcg"
	branchStateful  = branchOurs + "x"
	branchStateless = branchOurs + "s"
	branchProbe     = branchOurs + "p"
)

func randHex(n int) string {
	var b [32]byte
	return string(appendRandHex(b[:0], n))
}

// appendRandHex appends 2n random hex digits (n at most 16).
func appendRandHex(dst []byte, n int) []byte {
	var b [16]byte
	for i := 0; i < len(b); i += 8 {
		v := rand.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return hex.AppendEncode(dst, b[:n])
}

// newBranch is prefix and 20 random hex digits, in one allocation.
func newBranch(prefix string) string {
	var b [64]byte
	return string(appendRandHex(append(b[:0], prefix...), 10))
}

// statelessBranch derives a branch from the incoming one so that a
// retransmitted request is forwarded with the same branch (RFC 3261 16.11).
func statelessBranch(in, salt string) string {
	h := fnv.New64a()
	h.Write([]byte(in))
	h.Write([]byte{0})
	h.Write([]byte(salt))
	var b [8]byte
	v := h.Sum64()
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return branchStateless + hex.EncodeToString(b[:])
}
