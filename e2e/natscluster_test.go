package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/store/storetest"
)

// natsCluster is a 3-node NATS cluster with JetStream, each node an
// embedded nats-server listening on loopback, with cluster routes
// between them. Nodes can be stopped and restarted on the same ports
// and store directories (a fresh server.Options each time).
type natsCluster struct {
	t     testing.TB
	nodes []*natsNode
}

type natsNode struct {
	name        string
	port        int
	clusterPort int
	dir         string
	srv         *server.Server
}

func startNATSCluster(t testing.TB, size int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	for i := 0; i < size; i++ {
		c.nodes = append(c.nodes, &natsNode{
			name: fmt.Sprintf("nats-%d", i+1), port: freePort(t, "tcp"), clusterPort: freePort(t, "tcp"), dir: t.TempDir(),
		})
	}
	for i := range c.nodes {
		c.start(i)
	}
	t.Cleanup(c.stopAll)
	c.waitJetStream()
	return c
}

// URL is the client URL list of every node.
func (c *natsCluster) URL() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return strings.Join(urls, ",")
}

func (c *natsCluster) start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	var routes []string
	for j, o := range c.nodes {
		if j != i {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.clusterPort))
		}
	}
	opts := &server.Options{
		ServerName: n.name,
		Host:       "127.0.0.1",
		Port:       n.port,
		JetStream:  true,
		StoreDir:   n.dir,
		NoSigs:     true,
		NoLog:      true,
		Cluster: server.ClusterOpts{
			Name: "callgate",
			Host: "127.0.0.1",
			Port: n.clusterPort,
		},
		Routes:             server.RoutesFromStr(strings.Join(routes, ",")),
		JetStreamMaxMemory: 64 << 20,
	}
	n.srv = storetest.RunServerWithOptions(c.t, opts)
}

func (c *natsCluster) stop(i int) {
	n := c.nodes[i]
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

func (c *natsCluster) stopAll() {
	for i := range c.nodes {
		c.stop(i)
	}
}

// index returns the position of the node named name.
func (c *natsCluster) index(name string) int {
	for i, n := range c.nodes {
		if n.name == name {
			return i
		}
	}
	c.t.Fatalf("no NATS node %q", name)
	return -1
}

// waitJetStream waits until the running nodes have a JetStream meta
// leader (a client gets account info).
func (c *natsCluster) waitJetStream() {
	c.t.Helper()
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	testwait.CheckFor(c.t, 30*time.Second, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
}
