module roadrunner.test/cgo

go 1.19
