package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/node/nodetest"
	"github.com/callgate/callgate/store"
)

// TestTransferWhenTheHistoryCannotBeRead: a transfer or DTMF to a call
// that no node holds is 503 (retry) while the workspace's call history
// cannot be read, here because its stream refuses the reader's consumer,
// and 404 (no such call) once it can be read again. A 404 would tell the
// client to give up on a call that may have ended (409) or be running at
// its carrier (a webhook call).
func TestTransferWhenTheHistoryCannotBeRead(t *testing.T) {
	n := nodetest.Start(t)
	ws := n.Config().Bootstrap.Workspace
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := n.Store().JS.CreateStream(ctx, jetstream.StreamConfig{
		Name:         store.HistoryStreamName(ws),
		Subjects:     []string{store.HistorySubjectPrefix + ws + ".*"},
		Storage:      jetstream.FileStorage,
		MaxConsumers: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Another call's event: the history is not empty, so finding a call
	// in it takes reading it (a consumer), which the held one refuses.
	other := `{"kind":"started","call_id":"another-call","time":"2026-11-03T12:00:00Z","number":"+12025550100"}`
	if _, err := n.Store().JS.Publish(ctx, store.HistorySubjectPrefix+ws+".batch", []byte(other)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "hold"}); err != nil {
		t.Fatal(err)
	}
	post := func(op, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+n.HTTPAddr()+"/v1/calls/no-such-call/"+op,
			strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+n.APIKey())
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	ops := []struct{ op, body string }{{"transfer", `{"to":"tel:+14155550143"}`}, {"dtmf", `{"digits":"1"}`}}
	for _, o := range ops {
		if code, m := post(o.op, o.body); code != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(m["detail"]), "retry") {
			t.Errorf("%s, history unreadable: %d %v, want 503 asking for a retry", o.op, code, m)
		}
	}
	if err := st.DeleteConsumer(ctx, "hold"); err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		if code, m := post(o.op, o.body); code != http.StatusNotFound {
			t.Errorf("%s, history readable, no such call: %d %v, want 404", o.op, code, m)
		}
	}
}
