module github.com/espy-dpi/espy

go 1.26

require golang.org/x/crypto v0.59.0 // indirect
