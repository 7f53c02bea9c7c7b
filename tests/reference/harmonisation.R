# Reference values for crc_core.harmonisation, from R 4.2.2 with sva 3.46.0 (Debian bookworm's
# r-bioc-sva), on tests/reference/harmonisation_data.csv (synthetic, 75 patients of three centres
# with known shifts and scales: centre, age, sex and six features f*).
#
#   Rscript tests/reference/harmonisation.R tests/reference/harmonisation_data.csv tests/reference/harmonisation_r.json
suppressPackageStartupMessages(library(sva))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
dat <- t(as.matrix(d[, grep("^feature_", names(d))]))                    # features x patients, as ComBat wants
quiet <- function(expr) suppressMessages(expr)
plain <- quiet(ComBat(dat, batch = d$centre))                             # sva::ComBat(dat, batch)
covariates <- quiet(ComBat(dat, batch = d$centre, mod = model.matrix(~ sex + age, data = d)))
out <- list(combat = unname(t(plain)), combat_sex_age = unname(t(covariates)),
            sva = as.character(packageVersion("sva")), r = R.version.string)
writeLines(jsonlite::toJSON(out, digits = NA, pretty = FALSE), args[2])
