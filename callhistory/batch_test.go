package callhistory

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/store/storetest"
)

// takeAll empties p's free lists and returns what they held.
func takeAll(p *batchPool) []*batchBuf {
	var got []*batchBuf
	for i := range p.free {
		for more := true; more; {
			select {
			case b := <-p.free[i]:
				got = append(got, b)
			default:
				more = false
			}
		}
	}
	return got
}

// A message retried after "no responders" is sent again with the bytes
// it was first given: its buffer is not back in the pool (where the next
// batch would be written into it) while the retry may still send it, and
// it is back once the acknowledgement has come.
func TestAcksRetrySendsTheBytesItWasGivenAndThenReleasesThem(t *testing.T) {
	srv := storetest.RunServer(t)
	nc := connect(t, srv.ClientURL())
	a, l := newTestAcks(t, nc, 16, 10*time.Second, time.Second)
	a.retryWait = time.Hour // the test retries by hand
	pool := newBatchPool()
	events := []string{`{"kind":"started","call_id":"a"}`, `{"kind":"answered","call_id":"a"}`}
	b := pool.get(len(events[0]))
	for _, e := range events {
		b = b.add([]byte(e))
	}
	sent := strings.Join(events, "\n")
	if string(b.data) != sent || b.n != 2 {
		t.Fatalf("batch %q of %d events", b.data, b.n)
	}
	msg := b
	if err := a.publish("acme", Subject("acme", "x"), b); err != nil { // nobody answers: pending, to retry
		t.Fatal(err)
	}
	waitRetries(t, a, 1, 1)
	// Whatever the pool holds now is written over, as the next batches
	// would be.
	for _, f := range takeAll(pool) {
		if f == msg {
			t.Fatal("a message waiting to be retried is back in the pool")
		}
		f.data = append(f.data[:0], bytes.Repeat([]byte("X"), cap(f.data))...)
	}
	got := make(chan []byte, 1)
	answerAsStream(t, nc, func(m *nats.Msg) { got <- bytes.Clone(m.Data) })
	a.retry(1)
	select {
	case data := <-got:
		if string(data) != sent {
			t.Fatalf("retry sent %q, was given %q", data, sent)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the retry was not received")
	}
	l.waitFor(t, 2, 0)
	drained(t, a)
	back := takeAll(pool)
	if len(back) != 1 || back[0] != msg || len(back[0].data) != 0 || back[0].n != 0 || back[0].refs.Load() != 0 {
		t.Fatalf("after the acknowledgement the pool holds %d buffers; want the message's, emptied", len(back))
	}
}

// Retries and timeouts racing: every message's buffer is released once,
// after its last send, however its pending entry ends; meanwhile the
// pool's buffers are reused and written (under -race, a buffer given
// back while a send still reads it is a reported race).
func TestAcksReleaseEachBufferOnceAfterItsLastSend(t *testing.T) {
	srv := storetest.RunServer(t)
	nc := connect(t, srv.ClientURL())
	// Nobody answers: each message is retried every millisecond and
	// times out after a few.
	a, l := newTestAcks(t, nc, 256, 3*time.Millisecond, time.Millisecond)
	a.retryWait = time.Millisecond
	pool := newBatchPool()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the recorder's next batches, written into reused buffers
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b := pool.get(100)
			b = b.add(bytes.Repeat([]byte("Y"), 100))
			b.release()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	const msgs = 200
	var all []*batchBuf
	for i := 0; i < msgs; i++ {
		b := pool.get(64).add([]byte(fmt.Sprintf(`{"kind":"started","call_id":"%d"}`, i)))
		all = append(all, b)
		if err := a.publish("acme", Subject("acme", fmt.Sprint(i)), b); err != nil {
			t.Fatal(err)
		}
	}
	l.waitFor(t, 0, msgs)
	drained(t, a)
	close(stop)
	wg.Wait()
	// Retries scheduled before a message timed out find nothing pending;
	// let them run out.
	time.Sleep(20 * time.Millisecond)
	for i, b := range all {
		if r := b.refs.Load(); r != 0 {
			t.Errorf("message %d: %d references left", i, r)
		}
	}
	seen := map[*batchBuf]bool{}
	for _, b := range takeAll(pool) {
		if seen[b] {
			t.Fatal("a buffer is in the pool twice (released twice)")
		}
		seen[b] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		if err != jetstream.ErrAsyncPublishTimeout && err != jetstream.ErrNoStreamResponse {
			t.Errorf("failed with %v", err)
		}
	}
}

// A workspace's events go into its batch in order, a new batch when the
// next event would take the last over MaxBatchBytes; an event larger
// than that is a batch of its own; buffers grow through the classes.
func TestStageSplitsAWorkspacesEventsAtMaxBatchBytes(t *testing.T) {
	pool := newBatchPool()
	s := newStage()
	event := func(i, size int) []byte {
		e := fmt.Sprintf(`{"kind":"started","call_id":"%d","pad":"`, i)
		return []byte(e + strings.Repeat("p", size-len(e)-2) + `"}`)
	}
	var want [][]byte // acme's events
	for i := 0; i < 40; i++ {
		e := event(i, 5000)
		if i == 17 {
			e = event(i, MaxBatchBytes+1000)
		}
		want = append(want, e)
		if !s.add(pool, 1000, "acme", e) || !s.add(pool, 1000, "beta", event(i, 200)) {
			t.Fatal("refused under max")
		}
	}
	if s.n != 80 || len(s.list) != 2 || s.list[0].ws != "acme" || s.list[1].ws != "beta" {
		t.Fatalf("stage of %d events: %+v", s.n, s.list)
	}
	var got [][]byte
	for i, b := range s.list[0].batches {
		if len(b.data) > MaxBatchBytes && b.n != 1 {
			t.Errorf("batch %d: %d bytes in %d events", i, len(b.data), b.n)
		}
		lines := bytes.Split(b.data, []byte("\n"))
		if len(lines) != b.n {
			t.Errorf("batch %d: %d lines, %d events", i, len(lines), b.n)
		}
		if i < len(s.list[0].batches)-1 && len(b.data)+1+len(s.list[0].batches[i+1].data) <= MaxBatchBytes {
			t.Errorf("batch %d (%d bytes) and the next (%d) would fit in one", i, len(b.data), len(s.list[0].batches[i+1].data))
		}
		got = append(got, lines...)
	}
	if len(got) != len(want) {
		t.Fatalf("%d events in acme's batches, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("event %d is %.40q, want %.40q", i, got[i], want[i])
		}
	}
	if beta := s.list[1].batches; len(beta) != 1 || cap(beta[0].data) != 16<<10 || beta[0].n != 40 {
		t.Errorf("beta's 40 events of 200 bytes: %d batches, the first of %d bytes", len(beta), cap(beta[0].data))
	}
	if s.add(pool, 80, "acme", event(0, 100)) {
		t.Error("an event staged beyond max")
	}
}

// Once the pool holds buffers for the load, staging an event allocates
// nothing.
func TestStageAddDoesNotAllocate(t *testing.T) {
	pool := newBatchPool()
	s := newStage()
	e := []byte(`{"kind":"ended","call_id":"a84b4c76e66710@pbx.example.com","time":"2026-12-04T08:09:39.123456789Z","number":"+12025550100","workspace":"acme"}`)
	const perRound = 1000
	round := func() {
		for i := 0; i < perRound; i++ {
			s.add(pool, perRound, "acme", e)
		}
		for i := range s.list {
			for _, b := range s.list[i].batches {
				b.release() // as an acknowledgement does
			}
		}
		s.reset()
	}
	round() // the pool and the stage grow to the load
	if n := testing.AllocsPerRun(10, round); n != 0 {
		t.Fatalf("%v allocations per round of %d events", n, perRound)
	}
}
