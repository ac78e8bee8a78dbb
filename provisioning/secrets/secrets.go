// Package secrets encrypts carrier credentials at rest with AES-256-GCM.
//
// The 32-byte key comes from the configuration or the environment (base64,
// see KeyFromBase64) or, when none is given, from the file secret.key in the
// data directory, which LoadOrCreateKey generates on first start with mode
// 0600. Sealed values carry a format version, a short fingerprint of the key
// (so that a value sealed under another key is reported as such rather than
// as tampering), a random 96-bit nonce and the GCM ciphertext and tag.
//
// Associated data binds a sealed value to its place: seal an integration's
// credentials with the integration's id (and workspace) as associated data,
// and a ciphertext copied onto another record does not open.
package secrets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the key length: AES-256.
const KeySize = 32

// KeyFile is the key's file name inside the data directory.
const KeyFile = "secret.key"

const (
	version   = 1
	fpLen     = 4
	nonceLen  = 12
	headerLen = 1 + fpLen + nonceLen
)

var (
	// ErrDecrypt: the value was altered, or sealed with other associated data.
	ErrDecrypt = errors.New("secrets: cannot decrypt: the value was altered or belongs to another record")
	// ErrWrongKey: the value was sealed under a different key.
	ErrWrongKey = errors.New("secrets: the value was sealed with a different key (was secret.key or the configured key changed?)")
	// ErrFormat: the value is not something Seal produced.
	ErrFormat = errors.New("secrets: not a sealed value")
)

// Box seals and opens values under one key. It is safe for concurrent use.
type Box struct {
	aead cipher.AEAD
	fp   [fpLen]byte
}

// NewBox returns a Box for a 32-byte key.
func NewBox(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secrets: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	b := &Box{aead: aead}
	b.fp = fingerprint(key)
	return b, nil
}

func fingerprint(key []byte) [fpLen]byte {
	sum := sha256.Sum256(append([]byte("callgate secrets key fingerprint\x00"), key...))
	var fp [fpLen]byte
	copy(fp[:], sum[:fpLen])
	return fp
}

// Fingerprint identifies the key (hex of 4 bytes of a hash): safe to log.
func (b *Box) Fingerprint() string { return fmt.Sprintf("%x", b.fp[:]) }

// Seal encrypts plaintext bound to associatedData (which is not secret and
// not stored; Open needs the same bytes).
func (b *Box) Seal(plaintext, associatedData []byte) []byte {
	out := make([]byte, headerLen, headerLen+len(plaintext)+b.aead.Overhead())
	out[0] = version
	copy(out[1:], b.fp[:])
	if _, err := rand.Read(out[1+fpLen : headerLen]); err != nil {
		panic("secrets: no randomness: " + err.Error()) // crypto/rand does not fail on supported systems
	}
	return b.aead.Seal(out, out[1+fpLen:headerLen], plaintext, b.ad(associatedData))
}

// ad prefixes the header's version so a value cannot be replayed as another
// format version.
func (b *Box) ad(associatedData []byte) []byte {
	return append([]byte{version}, associatedData...)
}

// Open decrypts a value made by Seal with the same associated data.
func (b *Box) Open(sealed, associatedData []byte) ([]byte, error) {
	if len(sealed) < headerLen+b.aead.Overhead() || sealed[0] != version {
		return nil, ErrFormat
	}
	if !bytes.Equal(sealed[1:1+fpLen], b.fp[:]) {
		return nil, ErrWrongKey
	}
	pt, err := b.aead.Open(nil, sealed[1+fpLen:headerLen], sealed[headerLen:], b.ad(associatedData))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// SealString is Seal for text, encoded as unpadded base64url (for JSON and
// KV records).
func (b *Box) SealString(plaintext, associatedData string) string {
	return base64.RawURLEncoding.EncodeToString(b.Seal([]byte(plaintext), []byte(associatedData)))
}

// OpenString opens a value made by SealString.
func (b *Box) OpenString(sealed, associatedData string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil {
		return "", ErrFormat
	}
	pt, err := b.Open(raw, []byte(associatedData))
	if err != nil {
		return "", err
	}
	return string(pt), nil
}

// KeyFromBase64 decodes a key given in configuration or the environment
// (standard or URL base64, padded or not, surrounding space ignored).
func KeyFromBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("secrets: key must be %d bytes, got %d (generate one with: head -c 32 /dev/urandom | base64)", KeySize, len(k))
			}
			return k, nil
		}
	}
	return nil, errors.New("secrets: key is not base64 (generate one with: head -c 32 /dev/urandom | base64)")
}

// NewKey returns a random key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		panic("secrets: no randomness: " + err.Error())
	}
	return k
}

// LoadOrCreateKey reads dataDir/secret.key, or creates it with a random key
// (mode 0600, base64 text) when it does not exist. It refuses a key file that
// group or others can read or write.
func LoadOrCreateKey(dataDir string) ([]byte, error) {
	if dataDir == "" {
		return nil, errors.New("secrets: no data directory for " + KeyFile)
	}
	path := filepath.Join(dataDir, KeyFile)
	k, err := readKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets: create %s: %w", dataDir, err)
	}
	tmp, err := os.CreateTemp(dataDir, ".secret.key-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("secrets: create key: %w", err)
	}
	defer os.Remove(tmp.Name())
	key := NewKey()
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("secrets: create key: %w", err)
	}
	if _, err := tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("secrets: write key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("secrets: write key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("secrets: write key: %w", err)
	}
	// Link fails if another process created the key meanwhile: use theirs.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readKeyFile(path)
		}
		return nil, fmt.Errorf("secrets: install %s: %w", path, err)
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("secrets: %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secrets: %s has mode %04o: group and others must have no access (chmod 600 %s)", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if len(b) == KeySize {
		return b, nil // raw key bytes (base64 of a key is 44 characters)
	}
	k, err := KeyFromBase64(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// Load returns the key to use: configured (base64, from config or the
// environment) when not empty, else dataDir/secret.key, created on first
// start. source says which, for a log line ("config" or the file's path).
func Load(configured, dataDir string) (key []byte, source string, err error) {
	if strings.TrimSpace(configured) != "" {
		k, err := KeyFromBase64(configured)
		return k, "config", err
	}
	k, err := LoadOrCreateKey(dataDir)
	return k, filepath.Join(dataDir, KeyFile), err
}

// Mask returns a hint of a secret safe to show: "…" and its last four
// characters ("…a1b2"), or only "…" for secrets shorter than 12 characters,
// whose last four would give too much away.
func Mask(secret string) string {
	r := []rune(secret)
	if len(r) < 12 {
		return "…"
	}
	return "…" + string(r[len(r)-4:])
}
