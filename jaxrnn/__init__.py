"""jaxrnn: recurrent cells as pure functions over explicit parameter pytrees, unrolled with lax.scan."""

from jaxrnn import initializers as initializers
from jaxrnn import interop as interop
from jaxrnn._src.base import Cell as Cell
from jaxrnn._src.base import Dense as Dense
from jaxrnn._src.base import InputError as InputError
from jaxrnn._src.base import InputTypeError as InputTypeError
from jaxrnn._src.cells import ElmanParams as ElmanParams
from jaxrnn._src.cells import GRUParams as GRUParams
from jaxrnn._src.cells import LayerNormParams as LayerNormParams
from jaxrnn._src.cells import LSTMCarry as LSTMCarry
from jaxrnn._src.cells import LSTMNorm as LSTMNorm
from jaxrnn._src.cells import LSTMParams as LSTMParams
from jaxrnn._src.cells import MGUParams as MGUParams
from jaxrnn._src.cells import elman as elman
from jaxrnn._src.cells import gru as gru
from jaxrnn._src.cells import lstm as lstm
from jaxrnn._src.cells import mgu as mgu
from jaxrnn._src.irregular import GRUDCarry as GRUDCarry
from jaxrnn._src.irregular import GRUDParams as GRUDParams
from jaxrnn._src.irregular import TimeDecayParams as TimeDecayParams
from jaxrnn._src.irregular import grud as grud
from jaxrnn._src.irregular import time_decay as time_decay
from jaxrnn._src.layers import DenseParams as DenseParams
from jaxrnn._src.layers import Layer as Layer
from jaxrnn._src.layers import bidirectional as bidirectional
from jaxrnn._src.layers import broadcast_carry as broadcast_carry
from jaxrnn._src.layers import dense as dense
from jaxrnn._src.layers import dropout as dropout
from jaxrnn._src.layers import last_step as last_step
from jaxrnn._src.layers import output_size as output_size
from jaxrnn._src.layers import rnn as rnn
from jaxrnn._src.layers import stacked as stacked
from jaxrnn._src.layers import with_recurrent_mask as with_recurrent_mask
from jaxrnn._src.lstm1997 import LSTM1997Carry as LSTM1997Carry
from jaxrnn._src.lstm1997 import LSTM1997Params as LSTM1997Params
from jaxrnn._src.lstm1997 import lstm1997 as lstm1997
from jaxrnn._src.memory import tune_malloc as tune_malloc
from jaxrnn._src.unroll import default_unroll as default_unroll
from jaxrnn._src.unroll import reverse_valid as reverse_valid
from jaxrnn._src.unroll import unroll as unroll

__version__ = "0.1.0"
