package callhistory

import "sync/atomic"

// MaxBatchBytes bounds one history message (a workspace's events of a
// batch, one per line); the stream takes messages up to
// store.HistoryMaxMsgSize.
const MaxBatchBytes = 64 << 10

// batchClasses are the capacities of the pooled batch buffers, smallest
// first, up to MaxBatchBytes. A workspace's batch starts in the smallest
// that holds its first event and moves to the next as it fills (its
// bytes copied once per step, a third of a full one in all), so that a
// batch of one event, which is what a quiet workspace has, holds 1 KiB
// and not 64 while it is staged and until it is acknowledged.
var batchClasses = [...]int{1 << 10, 4 << 10, 16 << 10, MaxBatchBytes}

// freeBatches is how many free buffers of each class the pool keeps; the
// rest are left to the collector (after a stalled store released its
// MaxPending of them at once).
const freeBatches = 16

// batchBuf is a message of a workspace's events, one per line, while it
// is staged, published and waiting for its acknowledgement.
type batchBuf struct {
	data []byte
	n    int // events in data
	// refs counts who may still read data: whoever staged or sends it,
	// and the pending acknowledgement that may send it again
	// (acks.retry). The last release gives it back to its pool.
	refs atomic.Int32
	pool *batchPool // nil: not pooled (an oversized event's own buffer)
}

// release drops one reference to b; the last gives it back to its pool.
// b must not be used after.
func (b *batchBuf) release() {
	if b.refs.Add(-1) == 0 && b.pool != nil {
		b.pool.put(b)
	}
}

// batchPool keeps free batch buffers of each class in batchClasses.
type batchPool struct {
	free [len(batchClasses)]chan *batchBuf
}

func newBatchPool() *batchPool {
	p := &batchPool{}
	for i := range p.free {
		p.free[i] = make(chan *batchBuf, freeBatches)
	}
	return p
}

// get returns an empty buffer for at least size bytes with one reference
// (the caller's): of the smallest class that holds size, or of size
// itself (not pooled) beyond MaxBatchBytes.
func (p *batchPool) get(size int) *batchBuf {
	for i, c := range batchClasses {
		if size > c {
			continue
		}
		var b *batchBuf
		select {
		case b = <-p.free[i]:
		default:
			b = &batchBuf{data: make([]byte, 0, c), pool: p}
		}
		b.refs.Store(1)
		return b
	}
	b := &batchBuf{data: make([]byte, 0, size)}
	b.refs.Store(1)
	return b
}

// put keeps b, emptied, for a later get (or leaves it to the collector
// when the pool has enough of its class).
func (p *batchPool) put(b *batchBuf) {
	b.data, b.n = b.data[:0], 0
	for i, c := range batchClasses {
		if cap(b.data) == c {
			select {
			case p.free[i] <- b:
			default:
			}
			return
		}
	}
}

// add appends data, one event's JSON, as b's next line, moving b to a
// buffer of a larger class first when it has no room (the old one goes
// back to the pool). It returns b or the buffer that replaced it. The
// caller checks that the line fits in MaxBatchBytes when b holds events.
func (b *batchBuf) add(data []byte) *batchBuf {
	need := len(b.data) + len(data)
	if b.n > 0 {
		need++
	}
	if need > cap(b.data) && b.pool != nil {
		nb := b.pool.get(need)
		nb.data = append(nb.data, b.data...)
		nb.n = b.n
		b.release()
		b = nb
	}
	if b.n > 0 {
		b.data = append(b.data, '\n')
	}
	b.data = append(b.data, data...)
	b.n++
	return b
}
