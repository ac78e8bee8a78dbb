package sip

import (
	"strconv"
	"testing"
)

// TestShardMapBytesKey: getBytes finds what put stored under the same
// bytes (the same shard for a string and a []byte key), and nothing under
// other bytes or after delIf.
func TestShardMapBytesKey(t *testing.T) {
	var m shardMap[int]
	for i := 0; i < 1000; i++ {
		m.put(strconv.Itoa(i)+"-32046@127.0.0.1", i)
	}
	for i := 0; i < 1000; i++ {
		k := []byte(strconv.Itoa(i) + "-32046@127.0.0.1")
		if v, ok := m.getBytes(k); !ok || v != i {
			t.Fatalf("getBytes(%q) = %d, %v; want %d", k, v, ok, i)
		}
	}
	if _, ok := m.getBytes([]byte("1000-32046@127.0.0.1")); ok {
		t.Fatal("getBytes found a key never stored")
	}
	m.delIf("7-32046@127.0.0.1", 7)
	if _, ok := m.getBytes([]byte("7-32046@127.0.0.1")); ok {
		t.Fatal("getBytes found a deleted key")
	}
	if n := m.len(); n != 999 {
		t.Fatalf("len %d, want 999", n)
	}
}
