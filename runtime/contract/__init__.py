"""The deploy contract: typed records, the codec that reads and writes them, and the rules on them.

Imports nothing on package import (``codec`` and ``records`` are imported by module), so a record
module can import another without a cycle through this file.
"""
