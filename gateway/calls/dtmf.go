package calls

import "strings"

// MaxDTMFDigits is the longest digit string a DTMF command may carry.
const MaxDTMFDigits = 64

// DTMFDigits are the characters of a DTMF command: the 16 RFC 4733
// events plus w, a 0.5 s pause.
const DTMFDigits = "0123456789*#ABCDw"

// ValidDTMF reports whether digits is a valid DTMF command: 1 to
// MaxDTMFDigits characters of DTMFDigits.
func ValidDTMF(digits string) bool {
	if digits == "" || len(digits) > MaxDTMFDigits {
		return false
	}
	for i := 0; i < len(digits); i++ {
		if strings.IndexByte(DTMFDigits, digits[i]) < 0 {
			return false
		}
	}
	return true
}
