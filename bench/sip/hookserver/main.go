// Command hookserver is the routing hook of bench/sip/run.sh --hook: it
// answers every POST with {"action":"route"} (the number's assigned
// agent) after a fixed delay, and prints its address on stdout.
//
//	hookserver [-addr 127.0.0.1:0] [-delay 1ms]
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	delay := flag.Duration("delay", time.Millisecond, "time before each answer")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      5 * time.Second,
		IdleTimeout:       60 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				http.Error(w, "POST only", http.StatusMethodNotAllowed)
				return
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
			time.Sleep(*delay)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"action":"route"}`)
		}),
	}
	fmt.Println("http://" + ln.Addr().String())
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
