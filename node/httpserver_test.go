package node_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/internal/testwait"
)

// gaugeValue reads one unlabelled gauge from a registry.
func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) (float64, error) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("no gauge %s", name)
}

// TestSlowClientsAreCutOff: a client that sends its request a byte at a
// time, headers or body, has its connection closed by the server.
func TestSlowClientsAreCutOff(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *config.Config) {
		c.HTTP.ReadHeaderTimeout = time.Second
		c.HTTP.ReadTimeout = 2 * time.Second
	})
	t.Cleanup(n.Close)
	tests := []struct {
		name   string
		prefix string // sent at once
		drip   string // then one byte at a time
	}{
		{"headers", "", "GET /healthz HTTP/1.1\r\nHost: callgate\r\nX-Slow: " + string(make([]byte, 4096))},
		{"body", "POST /v1/workspaces HTTP/1.1\r\nHost: callgate\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n", `{"id":"` + string(make([]byte, 99000))},
		{"webhook body", "POST /webhooks/twilio/voice HTTP/1.1\r\nHost: callgate\r\nX-Twilio-Signature: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n", "To=" + string(make([]byte, 99000))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", n.HTTPAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			closed := make(chan struct{})
			go func() {
				_, _ = io.Copy(io.Discard, conn) // returns when the server closes
				close(closed)
			}()
			if _, err := io.WriteString(conn, tc.prefix); err != nil {
				t.Fatal(err)
			}
			deadline := time.After(20 * time.Second)
			for i := 0; ; i++ {
				select {
				case <-closed:
					return
				case <-deadline:
					t.Fatalf("connection still open after 20s and %d slow bytes", i)
				case <-time.After(50 * time.Millisecond):
				}
				b := byte('a')
				if i < len(tc.drip) {
					b = tc.drip[i]
				}
				if b == 0 {
					b = 'a'
				}
				if _, err := conn.Write([]byte{b}); err != nil {
					<-closed
					return
				}
			}
		})
	}
}

// TestConnectionCap: beyond http.max_connections a new connection is not
// served until an open one closes; callgate_http_connections shows it.
func TestConnectionCap(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *config.Config) {
		c.HTTP.MaxConnections = 2
		c.HTTP.ReadHeaderTimeout = time.Minute
		c.HTTP.ReadTimeout = time.Minute
	})
	t.Cleanup(n.Close)
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", n.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	testwait.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		v, err := gaugeValue(t, n.Registry(), "callgate_http_connections")
		if err != nil || v != 2 {
			return fmt.Errorf("callgate_http_connections %v, %v", v, err)
		}
		return nil
	})
	if v, err := gaugeValue(t, n.Registry(), "callgate_http_connections_max"); err != nil || v != 2 {
		t.Fatalf("callgate_http_connections_max %v, %v", v, err)
	}
	done := make(chan error, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
		resp, err := client.Get("http://" + n.HTTPAddr() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a third connection was served while two were open (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	held[0].Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("request after a slot freed: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("request not served 20s after a connection closed")
	}
}
