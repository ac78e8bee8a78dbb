package config

import (
	"strings"
	"testing"
	"time"
)

func TestHTTPSection(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		env     map[string]string
		want    HTTP
		wantErr []string
	}{
		{name: "defaults", want: DefaultHTTP()},
		{
			name: "file",
			yaml: "http:\n  max_connections: 100\n  read_timeout: 5s\n  read_header_timeout: 2s\n",
			want: HTTP{MaxConnections: 100, ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 45 * time.Second, IdleTimeout: time.Minute},
		},
		{
			name: "env wins",
			yaml: "http:\n  max_connections: 100\n",
			env:  map[string]string{"CALLGATE_HTTP_MAX_CONNECTIONS": "7", "CALLGATE_HTTP_IDLE_TIMEOUT": "5s"},
			want: HTTP{MaxConnections: 7, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 45 * time.Second, IdleTimeout: 5 * time.Second},
		},
		{name: "bad env", env: map[string]string{"CALLGATE_HTTP_MAX_CONNECTIONS": "many", "CALLGATE_HTTP_READ_TIMEOUT": "soon"}, wantErr: []string{"CALLGATE_HTTP_MAX_CONNECTIONS", "CALLGATE_HTTP_READ_TIMEOUT"}},
		{name: "out of range", yaml: "http:\n  max_connections: 0\n  write_timeout: 0s\n  read_header_timeout: 1m\n", wantErr: []string{"http.max_connections", "http.write_timeout", "http.read_header_timeout"}},
		{name: "unknown key", yaml: "http:\n  max_conns: 5\n", wantErr: []string{"max_conns"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := ""
			if tc.yaml != "" {
				p = write(t, tc.yaml)
			}
			c, err := Load(p, func(k string) string { return tc.env[k] })
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("accepted: %+v", c.HTTP)
				}
				for _, k := range tc.wantErr {
					if !strings.Contains(err.Error(), k) {
						t.Errorf("error does not name %s: %v", k, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.HTTP != tc.want {
				t.Fatalf("got %+v, want %+v", c.HTTP, tc.want)
			}
		})
	}
}
