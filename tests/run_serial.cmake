# Read by ctest after the doctest cases are discovered (TEST_INCLUDE_FILES, in order). A test that holds a run to
# a time budget runs alone: under ctest -j another test could take its cores between its measuring and its run.
set_tests_properties("vt compare --time-budget: the runs fit the budget, their set-up and each epoch's end included"
                     PROPERTIES RUN_SERIAL TRUE)
