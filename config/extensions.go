package config

// Extensions holds the sections of components wired later (sip, media,
// webhooks); each component owns its own Config type and validation.
type Extensions struct{}

func defaultExtensions() Extensions                        { return Extensions{} }
func extensionSettings() []Setting                         { return nil }
func (e *Extensions) applyEnv(func(string) string) []error { return nil }
func (e Extensions) validate() []error                     { return nil }
