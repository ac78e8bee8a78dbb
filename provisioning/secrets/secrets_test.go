package secrets_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/callgate/callgate/provisioning/secrets"
)

func box(t *testing.T) *secrets.Box {
	t.Helper()
	b, err := secrets.NewBox(secrets.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	b := box(t)
	for _, pt := range [][]byte{nil, []byte("x"), []byte(`{"account_sid":"AC123","auth_token":"secret"}`), bytes.Repeat([]byte{0}, 4096)} {
		sealed := b.Seal(pt, []byte("integration:int_1"))
		got, err := b.Open(sealed, []byte("integration:int_1"))
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("round trip of %d bytes: %v", len(pt), err)
		}
		if len(pt) > 4 && bytes.Contains(sealed, pt) {
			t.Fatal("plaintext visible in the sealed value")
		}
	}
	// Two seals of one value differ (random nonce).
	if bytes.Equal(b.Seal([]byte("a"), nil), b.Seal([]byte("a"), nil)) {
		t.Fatal("nonce reused")
	}
	s := b.SealString("tok", "ad")
	if got, err := b.OpenString(s, "ad"); err != nil || got != "tok" {
		t.Fatalf("string round trip %q %v", got, err)
	}
}

func TestTamperDetection(t *testing.T) {
	b := box(t)
	sealed := b.Seal([]byte("auth token 0123456789"), []byte("ad"))
	for i := range sealed {
		c := append([]byte(nil), sealed...)
		c[i] ^= 0x01
		if _, err := b.Open(c, []byte("ad")); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
	for _, c := range [][]byte{sealed[:len(sealed)-1], sealed[:10], nil, append(sealed, 0)} {
		if _, err := b.Open(c, []byte("ad")); err == nil {
			t.Fatal("truncated or extended value opened")
		}
	}
}

func TestWrongAssociatedData(t *testing.T) {
	b := box(t)
	sealed := b.Seal([]byte("secret"), []byte("integration:int_1"))
	if _, err := b.Open(sealed, []byte("integration:int_2")); !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("error %v", err)
	}
	if _, err := b.Open(sealed, nil); !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("error %v", err)
	}
}

func TestWrongKey(t *testing.T) {
	a, b := box(t), box(t)
	if _, err := b.Open(a.Seal([]byte("s"), nil), nil); !errors.Is(err, secrets.ErrWrongKey) {
		t.Fatalf("error %v", err)
	}
	if a.Fingerprint() == b.Fingerprint() || len(a.Fingerprint()) != 8 {
		t.Fatalf("fingerprints %s %s", a.Fingerprint(), b.Fingerprint())
	}
}

func TestNewBoxKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33} {
		if _, err := secrets.NewBox(make([]byte, n)); err == nil {
			t.Fatalf("%d-byte key accepted", n)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := secrets.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, secrets.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	k2, err := secrets.LoadOrCreateKey(dir)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second start: different key (%v)", err)
	}
	// Values sealed before a restart open after it.
	b1, _ := secrets.NewBox(k1)
	b2, _ := secrets.NewBox(k2)
	if _, err := b2.Open(b1.Seal([]byte("x"), nil), nil); err != nil {
		t.Fatal(err)
	}
	// No temporary files left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("data dir holds %d entries", len(ents))
	}
}

func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	dir := t.TempDir()
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			k, err := secrets.LoadOrCreateKey(dir)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}(i)
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) {
			t.Fatal("concurrent first starts made different keys")
		}
	}
}

func TestKeyFileRefusedWhenReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, secrets.KeyFile)
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(secrets.NewKey())), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := secrets.LoadOrCreateKey(dir)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("error %v", err)
	}
}

func TestKeyFileCorrupt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, secrets.KeyFile), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.LoadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), secrets.KeyFile) {
		t.Fatalf("error %v", err)
	}
}

func TestLoadConfigured(t *testing.T) {
	k := secrets.NewKey()
	for _, s := range []string{base64.StdEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k), " " + base64.StdEncoding.EncodeToString(k) + "\n"} {
		got, src, err := secrets.Load(s, "")
		if err != nil || src != "config" || !bytes.Equal(got, k) {
			t.Fatalf("%q: %v %s", s, err, src)
		}
	}
	if _, _, err := secrets.Load(base64.StdEncoding.EncodeToString(k[:16]), ""); err == nil {
		t.Fatal("16-byte key accepted")
	}
	if _, _, err := secrets.Load("!!!", ""); err == nil {
		t.Fatal("non-base64 key accepted")
	}
	dir := t.TempDir()
	_, src, err := secrets.Load("", dir)
	if err != nil || src != filepath.Join(dir, secrets.KeyFile) {
		t.Fatalf("%v %s", err, src)
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{
		"":                                    "…",
		"short":                               "…",
		"0123456789a":                         "…",
		"KEY0123456789ABCDEFa1b2":             "…a1b2",
		"faketoken0000000000000000000000a1b2": "…a1b2",
		"пароль-пароль-ключ":                  "…ключ",
	} {
		if got := secrets.Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzOpen(f *testing.F) {
	key := bytes.Repeat([]byte{7}, secrets.KeySize)
	b, _ := secrets.NewBox(key)
	f.Add(b.Seal([]byte("hello"), []byte("ad")), []byte("ad"))
	f.Add([]byte{1, 2, 3}, []byte(nil))
	f.Fuzz(func(t *testing.T, sealed, ad []byte) {
		pt, err := b.Open(sealed, ad)
		if err == nil && !bytes.Equal(b.Seal(pt, ad)[:1], []byte{1}) {
			t.Fatal("bad version")
		}
	})
}
