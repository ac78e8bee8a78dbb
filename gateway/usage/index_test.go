package usage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

const deNumber = "+493012345678" // free in indexPrices

var indexPrices = Config{Prices: map[string]int64{"US": 2, "GB": 5, "DE": 0, DefaultRow: 10}}

// committedBruteForce is committed as it was before the workspace index:
// every call of the node and every peer's runs of ws. m.mu held.
func (m *Meter) committedBruteForce(ws string, t time.Time) int64 {
	var sum int64
	for _, c := range m.calls {
		if c.ws == ws {
			sum += c.run().cost(t)
		}
	}
	for _, p := range m.peers {
		for _, r := range p.ws[ws] {
			sum += r.cost(t)
		}
	}
	return sum
}

// checkIndex fails unless byWS holds exactly the calls of m.calls, each
// under its workspace, with no empty entry, and committed of every
// workspace in wss equals the brute-force sum.
func checkIndex(t *testing.T, m *Meter, wss []string, step int) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for ws, cs := range m.byWS {
		if len(cs) == 0 {
			t.Fatalf("step %d: empty byWS entry for %s", step, ws)
		}
		for id, c := range cs {
			if c.id != id || c.ws != ws || m.calls[id] != c {
				t.Fatalf("step %d: byWS[%s][%s] = %+v, calls[%s] = %+v", step, ws, id, c, id, m.calls[id])
			}
		}
		n += len(cs)
	}
	if n != len(m.calls) {
		t.Fatalf("step %d: byWS holds %d calls, calls %d", step, n, len(m.calls))
	}
	now := time.Now()
	for _, ws := range wss {
		for _, at := range []time.Time{now, now.Add(3 * time.Minute)} {
			if got, want := m.committed(ws, at), m.committedBruteForce(ws, at); got != want {
				t.Fatalf("step %d: committed(%s) = %d, brute force %d", step, ws, got, want)
			}
		}
	}
}

// TestWorkspaceIndexFollowsTheCalls: through a seeded sequence of answers
// (some repeated), ends (some repeated, some of unknown or free calls),
// cuts of a workspace running out of credits and charges completing,
// the per-workspace index always holds exactly the metered calls, so
// committed equals the sum over every call; once every call is charged
// it is empty, and the balances are exact.
func TestWorkspaceIndexFollowsTheCalls(t *testing.T) {
	const credits, poorCredits = 10_000_000, 40
	rich := []string{"w0", "w1", "w2", "w3"}
	wss := append(append([]string{}, rich...), "poor", "nobody")
	svc, st := ledger(t, "poor", poorCredits)
	for _, ws := range rich {
		if _, _, err := svc.CreateWorkspace(context.Background(), ws, ws, credits); err != nil {
			t.Fatal(err)
		}
	}
	m, err := New(indexPrices, svc, st.NC, Options{Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	m.SetEnder(&recordingEnder{m: m, at: time.Now})
	if m.Price(deNumber) != 0 {
		t.Fatalf("Price(%s) = %d, want free", deNumber, m.Price(deNumber))
	}

	type modelCall struct {
		ws      string
		price   int64
		at, end time.Time
		ended   bool
	}
	rng := rand.New(rand.NewPCG(15, 2026))
	dests := []string{usNumber, gbNumber, frNumber, deNumber}
	var ids []string
	model := map[string]*modelCall{}
	live := func() []string {
		var out []string
		for _, id := range ids {
			if !model[id].ended {
				out = append(out, id)
			}
		}
		return out
	}
	end := func(id string) {
		c := model[id]
		if !c.ended {
			c.ended = true
			c.end = c.at.Add(time.Duration(rng.IntN(600)) * time.Second)
		}
		m.Ended(id, c.end) // a second end of the call is ignored
	}
	// waitCharged waits until every ended call is charged and forgotten.
	waitCharged := func() {
		testwait.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
			m.mu.Lock()
			defer m.mu.Unlock()
			for id, c := range m.calls {
				if c.minutes > 0 {
					return fmt.Errorf("call %s ended and not charged yet", id)
				}
			}
			return nil
		})
	}

	const steps = 600
	for step := range steps {
		switch r := rng.IntN(10); {
		case r < 5: // a new call
			ws := wss[rng.IntN(len(wss)-1)] // not "nobody"
			if rng.IntN(8) == 0 {
				ws = "poor"
			}
			id := fmt.Sprintf("c%04d", step)
			dest := dests[rng.IntN(len(dests))]
			at := time.Now().Add(-time.Duration(rng.IntN(300)) * time.Second)
			model[id] = &modelCall{ws: ws, price: m.Price(dest), at: at}
			ids = append(ids, id)
			m.Answered(id, ws, dest, at)
		case r < 6: // a running call answered again, even under another workspace: ignored
			// (not one of poor's: the meter may have cut and charged it,
			// and then it would be a new call)
			var l []string
			for _, id := range live() {
				if model[id].ws != "poor" {
					l = append(l, id)
				}
			}
			if len(l) > 0 {
				m.Answered(l[rng.IntN(len(l))], wss[rng.IntN(len(wss))], frNumber, time.Now())
			}
		case r < 9: // a call ends, perhaps again
			if len(ids) > 0 {
				end(ids[rng.IntN(len(ids))])
			}
		default: // a call never answered here ends
			m.Ended(fmt.Sprintf("unknown-%d", step), time.Now())
		}
		checkIndex(t, m, wss, step)
		if step%100 == 99 {
			waitCharged()
			checkIndex(t, m, wss, step)
			m.mu.Lock()
			for _, ws := range rich { // the rich workspaces are never cut
				var want []string
				for _, id := range live() {
					if model[id].ws == ws {
						want = append(want, id)
					}
				}
				if got := len(m.byWS[ws]); got != len(want) {
					t.Errorf("step %d: %s has %d calls indexed, want %d", step, ws, got, len(want))
				}
				for _, id := range want {
					if m.byWS[ws][id] == nil {
						t.Errorf("step %d: running call %s of %s not indexed", step, id, ws)
					}
				}
			}
			m.mu.Unlock()
		}
	}
	for _, id := range live() {
		end(id)
	}
	waitCharged()
	checkIndex(t, m, wss, steps)
	m.Close()
	m.mu.Lock()
	nCalls, nWS := len(m.calls), len(m.byWS)
	m.mu.Unlock()
	if nCalls != 0 || nWS != 0 {
		t.Fatalf("after every charge: %d calls, %d workspace entries; want none", nCalls, nWS)
	}

	// money: each rich workspace paid exactly its calls' started minutes
	// once; the poor one what its charges took, never below zero
	for _, ws := range rich {
		var want int64
		paid := 0
		for _, c := range model {
			if c.ws == ws && c.price > 0 {
				want += c.price * startedMinutes(c.at, c.end)
				paid++
			}
		}
		if got := len(usageEntries(t, svc, ws)); got != paid {
			t.Errorf("%s: %d usage entries, want %d", ws, got, paid)
		}
		if bal, err := svc.Balance(context.Background(), ws); err != nil || bal != credits-want {
			t.Errorf("%s: balance %d (%v), want %d - %d", ws, bal, err, credits, want)
		}
	}
	var took int64
	for _, e := range usageEntries(t, svc, "poor") {
		took -= e.Amount
	}
	if bal, err := svc.Balance(context.Background(), "poor"); err != nil || bal < 0 || bal != poorCredits-took {
		t.Errorf("poor: balance %d (%v), want %d - %d, not below zero", bal, err, poorCredits, took)
	}
}
