package callhistory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

func TestAckError(t *testing.T) {
	cases := []struct {
		ack  string
		want error // nil: stored; errAPI: the server's error
	}{
		{`{"stream":"CALLGATE_HISTORY_acme","seq":12}`, nil},
		{`{"stream":"CALLGATE_HISTORY_acme","domain":"hub","seq":12,"duplicate":true}`, nil},
		{`{"seq":12,"stream":"S"}`, nil}, // another field order: decoded
		{`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"S","seq":0}`, errAPI},
		{`{"stream":"S","seq":0,"error":{"code":400,"err_code":10054,"description":"maximum payload exceeded"}}`, errAPI},
		{`{"stream":""}`, jetstream.ErrInvalidJSAck},
		{`{}`, jetstream.ErrInvalidJSAck},
		{`not json`, jetstream.ErrInvalidJSAck},
		{``, jetstream.ErrInvalidJSAck},
	}
	for _, c := range cases {
		err := ackError([]byte(c.ack))
		var api *jetstream.APIError
		switch {
		case c.want == nil && err != nil, c.want == errAPI && !errors.As(err, &api),
			c.want != nil && c.want != errAPI && !errors.Is(err, c.want):
			t.Errorf("ackError(%s) = %v, want %v", c.ack, err, c.want)
		}
	}
}

var errAPI = errors.New("an API error")

// ackLog records what acks reported.
type ackLog struct {
	mu     sync.Mutex
	stored int
	errs   []error
	wss    []string
}

func (l *ackLog) onStored(n int) { l.mu.Lock(); l.stored += n; l.mu.Unlock() }
func (l *ackLog) onFailed(ws string, n int, err error) {
	l.mu.Lock()
	for i := 0; i < n; i++ {
		l.errs, l.wss = append(l.errs, err), append(l.wss, ws)
	}
	l.mu.Unlock()
}

func (l *ackLog) waitFor(t *testing.T, stored, failed int) {
	t.Helper()
	testwait.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.stored != stored || len(l.errs) != failed {
			return fmt.Errorf("%d stored, failed %v; want %d stored, %d failed", l.stored, l.errs, stored, failed)
		}
		return nil
	})
}

// drained fails t unless nothing is pending (complete is closed).
func drained(t *testing.T, a *acks) {
	t.Helper()
	select {
	case <-a.complete():
	case <-time.After(30 * time.Second):
		t.Fatal("acknowledgements still pending")
	}
}

// answerAsStream answers every history message on nc as a stream would
// (a publish acknowledgement), after seen (if any) has looked at it,
// until the test ends or the subscription returned is removed.
func answerAsStream(t *testing.T, nc *nats.Conn, seen func(*nats.Msg)) *nats.Subscription {
	t.Helper()
	sub, err := nc.Subscribe("callgate.history.>", func(m *nats.Msg) {
		if seen != nil {
			seen(m)
		}
		_ = m.Respond([]byte(`{"stream":"S","seq":1}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newTestAcks(t *testing.T, nc *nats.Conn, max int, timeout, tick time.Duration) (*acks, *ackLog) {
	t.Helper()
	l := &ackLog{}
	a, err := newAcks(nc, max, timeout, tick, l.onStored, l.onFailed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	return a, l
}

// message is data as a message of one event, in a buffer of its own (not
// pooled).
func message(data []byte) *batchBuf {
	b := &batchBuf{data: data, n: 1}
	b.refs.Store(1)
	return b
}

// waitRetries waits until pending id has been retried n times (after no
// responders).
func waitRetries(t *testing.T, a *acks, id uint64, n int) {
	t.Helper()
	testwait.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if p := a.pending[id]; p == nil || p.retries != n {
			return fmt.Errorf("pending %d: %+v, want %d retries", id, p, n)
		}
		return nil
	})
}

// silent subscribes to subject and never replies.
func silent(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestAcksCountsStoredAndRefusedEventsOfAStream(t *testing.T) {
	st := storetest.OpenEmbedded(t)
	ctx := context.Background()
	if err := st.EnsureHistory(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	// The server's acknowledgement of a stored event is read from its bytes.
	resp, err := st.NC.Request(Subject("acme", "probe"), []byte(`{"kind":"started"}`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !plainPubAck(resp.Data) {
		t.Fatalf("acknowledgement %q not recognised as a plain PubAck", resp.Data)
	}
	a, l := newTestAcks(t, st.NC, 16, 10*time.Second, time.Second)
	for i := 0; i < 40; i++ { // more than max: publish waits for room
		if err := a.publish("acme", Subject("acme", fmt.Sprint(i)), message([]byte(`{"kind":"started"}`))); err != nil {
			t.Fatal(err)
		}
	}
	// Over the stream's MaxMsgSize (16 KiB): refused with an API error.
	if err := a.publish("acme", Subject("acme", "big"), message(make([]byte, store.HistoryMaxMsgSize+1))); err != nil {
		t.Fatal(err)
	}
	l.waitFor(t, 40, 1)
	drained(t, a)
	var api *jetstream.APIError
	if !errors.As(l.errs[0], &api) || l.wss[0] != "acme" {
		t.Errorf("refused event: %v (workspace %q)", l.errs[0], l.wss[0])
	}
	st2, err := st.History(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st2.Info(ctx)
	if err != nil || info.State.Msgs != 41 {
		t.Fatalf("stream holds %+v, %v; want 41 messages", info.State, err)
	}
}

// TestAcksCountedWhenDrained: once nothing is pending (what
// Recorder.Close waits for), every outcome has been counted, even when
// counting takes a while (CI once saw Close return with 899 of 900
// events counted: the last acknowledgement was removed, then counted).
func TestAcksCountedWhenDrained(t *testing.T) {
	st := storetest.OpenEmbedded(t)
	ctx := context.Background()
	if err := st.EnsureHistory(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	stored, failed := 0, 0
	slowCount := func(n *int) {
		time.Sleep(20 * time.Millisecond) // a slow count: the window it must not leave open
		mu.Lock()
		*n++
		mu.Unlock()
	}
	a, err := newAcks(st.NC, 16, 10*time.Second, time.Second, func(int) { slowCount(&stored) },
		func(string, int, error) { slowCount(&failed) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	for i := 0; i < 5; i++ {
		if err := a.publish("acme", Subject("acme", fmt.Sprint(i)), message([]byte(`{"kind":"started"}`))); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.publish("acme", Subject("acme", "big"), message(make([]byte, store.HistoryMaxMsgSize+1))); err != nil { // refused
		t.Fatal(err)
	}
	drained(t, a)
	mu.Lock()
	defer mu.Unlock()
	if stored != 5 || failed != 1 {
		t.Fatalf("when nothing was pending: %d stored, %d failed counted; want 5 and 1", stored, failed)
	}
}

func TestAcksTimeOut(t *testing.T) {
	srv := storetest.RunServer(t)
	nc := connect(t, srv.ClientURL())
	silent(t, nc, "callgate.history.>")
	a, l := newTestAcks(t, nc, 16, 100*time.Millisecond, 20*time.Millisecond)
	if err := a.publish("acme", Subject("acme", "x"), message([]byte("{}"))); err != nil {
		t.Fatal(err)
	}
	l.waitFor(t, 0, 1)
	if !errors.Is(l.errs[0], jetstream.ErrAsyncPublishTimeout) || l.wss[0] != "acme" {
		t.Errorf("failed with %v (workspace %q)", l.errs[0], l.wss[0])
	}
	drained(t, a)
}

func TestAcksStallThenFail(t *testing.T) {
	srv := storetest.RunServer(t)
	nc := connect(t, srv.ClientURL())
	silent(t, nc, "callgate.history.>")
	// No timeout sweep during the test: the two first stay pending.
	a, _ := newTestAcks(t, nc, 2, 50*time.Millisecond, time.Hour)
	for i := 0; i < 2; i++ {
		if err := a.publish("acme", Subject("acme", fmt.Sprint(i)), message([]byte("{}"))); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.publish("acme", Subject("acme", "third"), message([]byte("{}"))); !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
		t.Fatalf("third publish with two pending of two: %v", err)
	}
}

func TestAcksRetryWhenNobodyAnswers(t *testing.T) {
	srv := storetest.RunServer(t)
	nc := connect(t, srv.ClientURL())
	a, l := newTestAcks(t, nc, 16, 10*time.Second, time.Second)
	a.retryWait = time.Hour // the test retries by hand
	if err := a.publish("acme", Subject("acme", "x"), message([]byte("{}"))); err != nil {
		t.Fatal(err)
	}
	waitRetries(t, a, 1, 1)
	// A stream shows up (here: something answering like one).
	sub := answerAsStream(t, nc, nil)
	a.retry(1)
	l.waitFor(t, 1, 0)

	// Nobody at all: given up after the retries.
	_ = sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := a.publish("acme", Subject("acme", "y"), message([]byte("{}"))); err != nil {
		t.Fatal(err)
	}
	for r := 1; r <= noResponderRetries; r++ {
		waitRetries(t, a, 2, r)
		a.retry(2)
	}
	l.waitFor(t, 1, 1)
	if !errors.Is(l.errs[0], jetstream.ErrNoStreamResponse) {
		t.Errorf("failed with %v", l.errs[0])
	}
}

func TestAcksFailWhatIsPendingOnADisconnect(t *testing.T) {
	srv := storetest.RunServerWithOptions(t, &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
	nc := connect(t, srv.ClientURL())
	silent(t, connect(t, srv.ClientURL()), "callgate.history.>")
	a, l := newTestAcks(t, nc, 16, 10*time.Second, time.Second)
	for i := 0; i < 3; i++ {
		if err := a.publish("acme", Subject("acme", fmt.Sprint(i)), message([]byte("{}"))); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	l.waitFor(t, 0, 3)
	for _, err := range l.errs {
		if !errors.Is(err, nats.ErrDisconnected) {
			t.Errorf("failed with %v", err)
		}
	}
	drained(t, a)
}

// FuzzAckError: an acknowledgement recognised from its bytes is one
// jetstream's decoding takes as stored.
func FuzzAckError(f *testing.F) {
	for _, s := range []string{
		`{"stream":"CALLGATE_HISTORY_acme","seq":12}`,
		`{"stream":"CALLGATE_HISTORY_acme","domain":"hub","seq":1}`,
		`{"stream":"S","domain":"","seq":0}`,
		`{"stream":"S","seq":012}`,
		`{"stream":"S","seq":18446744073709551616}`,
		`{"stream":"S","seq":1,"duplicate": true}`,
		`{"stream":"S","seq":1}}`,
		`{"stream":"S\"","seq":1}`,
		`{"error":{"code":503,"err_code":10077,"description":"x"},"stream":"S","seq":0}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, ack []byte) {
		if plainPubAck(ack) {
			if err := decodeAck(ack); err != nil {
				t.Fatalf("%q taken as stored from its bytes; decoded: %v", ack, err)
			}
		}
		if got, want := ackError(ack), decodeAck(ack); (got == nil) != (want == nil) {
			t.Fatalf("ackError(%q) = %v, decodeAck: %v", ack, got, want)
		}
	})
}

// A retry whose send fails (the connection closed) counts its events as
// failed once, and nothing is pending afterwards: complete is closed only
// with every outcome counted.
func TestAcksRetryThatCannotSendIsCountedOnce(t *testing.T) {
	srv := storetest.RunServer(t)
	nc := connect(t, srv.ClientURL())
	a, l := newTestAcks(t, nc, 16, 10*time.Second, time.Second)
	a.retryWait = time.Hour // the test retries by hand
	b := message([]byte("{}"))
	b.n = 3
	if err := a.publish("acme", Subject("acme", "x"), b); err != nil {
		t.Fatal(err)
	}
	waitRetries(t, a, 1, 1)
	nc.Close()
	a.retry(1)
	drained(t, a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) != 3 || !errors.Is(l.errs[0], nats.ErrConnectionClosed) {
		t.Fatalf("failed %v, want the 3 events once, connection closed", l.errs)
	}
}
