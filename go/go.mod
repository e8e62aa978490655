module roadrunner

go 1.19
